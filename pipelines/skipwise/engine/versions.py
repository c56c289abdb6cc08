"""Code versions of a project's assets: as their source is on disk now (what would run), and as it
ran in this process (the bytes each module was executed from, `skipwise.project.recorder`): a
partition is never recorded under the version of a file that changed after its module was imported."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from skipwise.core.codeversion import CodeIndex, CodeVersion
from skipwise.core.errors import InputError
from skipwise.core.spec import Asset
from skipwise.project import recorder as loaded


class CodeVersions:
    """The code versions of the project at `root`, read through `index` (which caches them)."""

    def __init__(self, root: Path, index: CodeIndex, warn: Callable[[str], None]) -> None:
        self.root = Path(root)
        self.index = index
        self.warn = warn
        self._code_versions: dict[str, CodeVersion] = {}
        self._ran: dict[tuple[str, str, int], str] = {}  # (asset, planned version, imports seen) -> version that ran

    def version(self, asset: Asset) -> str:
        """The digest of `asset`'s code as it is on disk now."""
        return self.of(asset).digest

    def of(self, asset: Asset) -> CodeVersion:
        """The code version of `asset` as its source files are on disk now (what would run)."""
        if asset.name not in self._code_versions:
            self._code_versions[asset.name] = self.index.version(asset.fn)
        return self._code_versions[asset.name]

    def that_ran(self, asset: Asset, planned: str) -> str:
        """The code version of what this process executed for `asset`, given the `planned` one.

        Modules imported since skipwise was are versioned by the exact bytes they were compiled
        from (`skipwise.project.recorder`); a file that changed after its module was imported therefore
        yields the version of the old code, never the new one. A module imported before skipwise
        could record it is trusted only if its file has not changed since this process started.
        """
        cv = self.of(asset)
        memo = (asset.name, planned, loaded.generation())
        if memo in self._ran:
            return self._ran[memo]
        changed: list[str] = []
        start: float | None = None
        for rel, sha in cv.files:
            path = self.root / rel
            src = loaded.source_of(path)
            if src is not None:
                if src.sha256 != sha:
                    changed.append(rel)
                continue
            if not loaded.is_imported(path):
                continue  # never imported, so it did not run
            start = start or loaded.process_start()
            try:
                ctime = os.stat(path).st_ctime
            except OSError:
                ctime = None
            if start is None or ctime is None or ctime >= start - 0.1:  # start is known to ~10 ms
                raise InputError(
                    f"{rel} was imported before skipwise and may have changed since, so the code that computed "
                    f"{asset.name} is unknown: nothing was committed",
                    hint="import skipwise (or your Dagster code location) before your own modules, then run again",
                )
        ran = planned
        if changed:
            ran = CodeIndex(self.root, read_source=loaded.read_as_imported).version(asset.fn).digest
        if ran != planned:
            self.warn(
                f"{', '.join(changed) or 'its code'} changed after {asset.name}'s code was imported: the partitions "
                "computed now ran the old code and are recorded under its version, so they show as stale; "
                "run again to compute them with the new code"
            )
        self._ran[memo] = ran
        return ran
