"""Suspects: committed partitions `skipwise verify` found to differ from a fresh computation.

The committed data is never touched: the registry, ``data/.skipwise/suspects.json``, names each
suspect partition by the manifest it had when it was verified (fingerprint, output hash, time of
commit), and planning turns a SKIP (or a RESTORE of that very version) into a RUN. Any new commit
of the partition has a new `created_at`, so its entry stops applying by itself: nothing has to be
cleared, and entries that no longer apply are pruned whenever the file is written again.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable, Iterable

from skipwise.core.manifest import Manifest
from skipwise.core.plan import RESTORE, RUN, SKIP, Decision
from skipwise.store.files import atomic_write

#: The reason a suspect partition runs (what `skipwise plan` and `skipwise status` show).
REASON = "skipwise verify: the committed output differs from a fresh computation"
FORMAT = 1


@dataclass(frozen=True)
class Suspect:
    """One committed partition whose output a fresh computation did not reproduce."""

    asset: str
    partition: str
    fingerprint: str
    output_hash: str
    created_at: str
    fresh_hash: str = ""
    found_at: str = ""

    @classmethod
    def of(cls, manifest: Manifest, fresh_hash: str = "", found_at: str = "") -> Suspect:
        return cls(
            manifest.asset,
            manifest.partition,
            manifest.fingerprint,
            manifest.output_hash,
            manifest.created_at,
            fresh_hash,
            found_at,
        )

    def covers(self, manifest: Manifest | None) -> bool:
        """Whether `manifest` is the very commit that was found to differ (not a later one)."""
        return manifest is not None and (
            manifest.asset,
            manifest.partition,
            manifest.fingerprint,
            manifest.output_hash,
            manifest.created_at,
        ) == (self.asset, self.partition, self.fingerprint, self.output_hash, self.created_at)


class Suspects:
    """The registry at `path`; read again whenever the file changes (another process verified)."""

    def __init__(self, path: Path, warn: Callable[[str], None] | None = None) -> None:
        self.path = Path(path)
        self._warn = warn
        self._stamp: tuple[int, int, int] | None = None
        self._entries: dict[tuple[str, str], Suspect] = {}

    def entries(self) -> dict[tuple[str, str], Suspect]:
        """(asset, partition) -> its suspect entry."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:  # the usual case: nothing was ever found
            self._stamp, self._entries = None, {}
            return self._entries
        stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        if stamp != self._stamp:
            self._entries = self._read()
            self._stamp = stamp
        return self._entries

    def vet(self, decision: Decision, manifest: Manifest | None) -> Decision:
        """`decision` made RUN when it would keep (SKIP) or bring back (RESTORE) the output of
        `manifest` (the committed one, or the kept version to restore) and that is a suspect."""
        if decision.action not in (SKIP, RESTORE):
            return decision
        entry = self.entries().get((decision.asset, decision.partition))
        if entry is None or not entry.covers(manifest):
            return decision
        return replace(decision, action=RUN, reason=REASON)

    def add(self, found: Iterable[Suspect], still_applies: Callable[[Suspect], bool]) -> None:
        """Record `found`, keeping the entries that `still_applies` (their partition's manifest is
        still the one verified); written whole to a temporary file, then renamed over the old."""
        merged = {key: s for key, s in self.entries().items() if still_applies(s)}
        merged.update({(s.asset, s.partition): s for s in found})
        payload = {"format": FORMAT, "suspects": [asdict(s) for _, s in sorted(merged.items())]}
        atomic_write(self.path, (json.dumps(payload, indent=1, sort_keys=True) + "\n").encode())
        self._stamp, self._entries = None, merged

    def _read(self) -> dict[tuple[str, str], Suspect]:
        try:
            data = json.loads(self.path.read_bytes())
            found = [Suspect(**row) for row in data["suspects"]]
        except (OSError, ValueError, TypeError, KeyError) as exc:
            # Unreadable: nothing can be vetted, so say so rather than trust it quietly.
            if self._warn is not None:
                self._warn(
                    f"{self.path}: cannot read the partitions `skipwise verify` found stale ({exc}); "
                    "delete the file and run `skipwise verify` again"
                )
            return {}
        return {(s.asset, s.partition): s for s in found}
