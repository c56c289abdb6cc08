"""Assets a plan found wholly up to date, remembered so that the next plan of an unchanged asset is
one pass of `lstat` calls instead of a manifest read and a fingerprint per partition.

After a full plan (every key of the asset) in which every partition was SKIP and nothing warned,
`Settled.remember` writes `data/.skipwise/settled/<layer>/<asset>.json`: the keys and their
fingerprints, a token of everything else a decision depends on (the asset's and its inputs'
declarations, the code version, the params, the library's scheme, what the partitions observably
read, as they are now) and the paths of every file a decision read: the asset's manifests and
outputs, its derived inputs' manifests, its raw inputs' folders (every file in them, recursively,
with DVC's record of them: the `.dvc` file of what it tracks, `dvc.lock`), the suspects file,
`skipwise.toml` and DVC's config. `Settled.check` answers SKIP for every key only when
the token is the same and every one of those files has the same inode, size, modification and
change time (the change time cannot be set back from user space): any difference, a missing
file, a new file in a raw folder, an object-store source or store, an unversioned plain input,
sends the asset through the full plan, which writes a new record if it is again up to date.

The record is derived state: deleting it costs one full plan, never a wrong answer.
"""

from __future__ import annotations

import gc
import hashlib
import json
import os
from array import array
from pathlib import Path
from typing import Any

from skipwise.adapters.dvc.manifest import tracked_target
from skipwise.core.hashing import digest
from skipwise.core.manifest import SCHEME_VERSION
from skipwise.core.partitions import key_folder
from skipwise.core.plan import SKIP, Decision
from skipwise.core.spec import Asset, Plain, Source
from skipwise.core.version import __version__
from skipwise.store.files import atomic_write
from skipwise.store.partitions import MANIFEST


#: bump when what a record holds, or what its token covers, changes
FORMAT = 3
_MISSING = (-1, -1, -1, -1)


class Settled:
    """The up-to-date records of one project's assets (local store and DVC sources only)."""

    def __init__(self, project: Any) -> None:  # the engine's Project, which builds this (engine/project.py)
        self.project = project
        self.root = project.root
        self.folder = project.data_root / ".skipwise" / "settled"

    # -- answering ----------------------------------------------------------------------------------

    def check(self, asset: Asset, keys: list[str]) -> list[Decision] | None:
        """SKIP for each of `keys` when nothing `asset`'s last full plan depended on changed, else None."""
        if not self._applies(asset):
            return None
        try:
            record = json.loads(self._path(asset).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(record, dict) or record.get("format") != FORMAT or record.get("keys") != keys:
            return None
        deps = [str(d) for d in record.get("observed_deps", [])]
        if record.get("token") != self._token(asset, deps):
            return None
        files = record.get("files")
        if not isinstance(files, list) or record.get("stats") != self._stats(files):
            return None
        if record.get("sources") != self._sources(asset):
            return None
        fingerprints = record.get("fingerprints")
        reasons = record.get("reasons")
        if not isinstance(fingerprints, list) or not isinstance(reasons, list) or len(fingerprints) != len(keys):
            return None
        if len(reasons) < len(keys):
            reasons = reasons + reasons[-1:] * (len(keys) - len(reasons))
        name = asset.name
        # Many small objects at once: the collector's passes over them would find nothing to free.
        paused = gc.isenabled()
        gc.disable()
        try:
            return [Decision(name, key, SKIP, why, fp) for key, why, fp in zip(keys, reasons, fingerprints)]
        finally:
            if paused:
                gc.enable()

    # -- remembering --------------------------------------------------------------------------------

    def remember(self, asset: Asset, keys: list[str], decisions: list[Decision]) -> None:
        """Record that `decisions` (one per key of `keys`, all SKIP) are what a full plan found."""
        if not self._applies(asset) or len(decisions) != len(keys) or any(d.action != SKIP for d in decisions):
            return
        store = self.project.store
        files: list[str] = []
        deps: set[str] = set()
        for key in keys:
            m = self.project.manifest(asset, key)
            if m is None:
                return
            deps |= set(m.observed)
            folder = os.path.join("data", asset.layer, asset.name, key_folder(key))
            files += [os.path.join(folder, MANIFEST), os.path.join(folder, os.path.basename(m.output))]
        for dep in asset.deps:
            up = self.project.graph.node(dep.name)
            if isinstance(up, Asset):
                files += [
                    os.path.join("data", up.layer, up.name, key_folder(k), MANIFEST)
                    for k in sorted(store.materialized_keys(up.layer, up.name))
                ]
                files.append(os.path.join("data", up.layer, up.name))  # a partition added or removed
        # verify's suspects, the locations config, DVC's config (which remote a source reads when the
        # workspace lacks its file)
        files += [
            os.path.join("data", ".skipwise", "suspects.json"),
            "skipwise.toml",
            os.path.join(".dvc", "config"),
            os.path.join(".dvc", "config.local"),
        ]
        observed = sorted(deps)
        reasons = sorted({d.reason for d in decisions})
        record = {
            "format": FORMAT,
            "asset": asset.name,
            "keys": keys,
            "fingerprints": [d.fingerprint for d in decisions],
            "reasons": [d.reason for d in decisions] if len(reasons) > 1 else reasons,
            "observed_deps": observed,
            "token": self._token(asset, observed),
            "files": files,
            "stats": self._stats(files),
            "sources": self._sources(asset),
        }
        path = self._path(asset)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(path, json.dumps(record, separators=(",", ":")).encode())
        except OSError:
            pass  # a cache: without it the next plan is a full one

    # -- what a record depends on ------------------------------------------------------------------

    def _applies(self, asset: Asset) -> bool:
        """Only where every input is versioned from local files: a local store, DVC sources (a DVC
        remote too: its versions come from DVC's records, watched here), skipwise assets; an
        object-store listing or an unversioned plain input must be asked every time."""
        if self.project.store.remote:
            return False
        for dep in asset.deps:
            up = self.project.graph.node(dep.name)
            if isinstance(up, Plain) or (isinstance(up, Source) and up.url):
                return False
        return True

    def _path(self, asset: Asset) -> Path:
        return self.folder / asset.layer / f"{asset.name}.json"

    def _token(self, asset: Asset, observed_deps: list[str]) -> str:
        p = self.project
        inputs = [repr(p.graph.node(d.name)) for d in asset.deps]
        return digest(
            {
                "library": [__version__, SCHEME_VERSION, FORMAT],
                "asset": repr(asset),
                "inputs": inputs,
                "code": p.code.version(asset),
                "params": p.params_digest(asset),
                "declared": p.observations.now(p.observations.declared(asset)),
                "observed": p.observations.now(observed_deps),
            }
        )

    def _stats(self, files: list[str]) -> str:
        """A digest of each file's (inode, size, mtime, ctime); a missing one counts as such."""
        root = str(self.root) + os.sep
        return hashlib.sha256(lstat_all([root + rel for rel in files]).tobytes()).hexdigest()

    def _sources(self, asset: Asset) -> dict[str, Any]:
        """For each raw input: a digest of every file under its folder (names and stats) and of its DVC record."""
        out: dict[str, Any] = {}
        for dep in asset.deps:
            up = self.project.graph.node(dep.name)
            if not isinstance(up, Source):
                continue
            folder = self.root / up.path
            tracked = tracked_target(self.root, up.path)  # the folder, or one above it DVC tracks
            records = [self.root / f"{tracked}.dvc", self.root / "dvc.lock"] if tracked else []
            h = hashlib.sha256()
            for name in (*map(str, records), str(folder)):
                try:
                    st = os.lstat(name)
                    h.update(f"{name}\0{st.st_ino}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ctime_ns}\n".encode())
                except OSError:
                    h.update(f"{name}\0absent\n".encode())
            _walk(str(folder), h)
            out[up.name] = h.hexdigest()
        return out


def _walk(folder: str, h: Any) -> None:
    """Every entry under `folder`, with its stats, into `h` (links are not followed). Entries come in
    the order the folder lists them: stable while the folder is unchanged, and a change of the folder
    changes its own times, so a new order only ever costs a full plan."""
    try:
        entries = list(os.scandir(folder))
    except OSError:
        h.update(b"\0unreadable\n")
        return
    h.update("\0".join(e.name for e in entries).encode("utf-8", "surrogateescape"))
    h.update(lstat_all([e.path for e in entries]).tobytes())
    for e in entries:
        if e.is_dir(follow_symlinks=False):
            h.update(b"\0dir\0")
            _walk(e.path, h)


def lstat_all(paths: list[str]) -> "array[int]":
    """(inode, size, mtime, ctime) of each of `paths` in order, flat; a missing one as `_MISSING`.
    (From several threads it is no faster: the kernel's path lookups are most of each call.)"""
    values: list[int] = []
    add = values.extend
    stat = os.lstat
    for path in paths:
        try:
            st = stat(path)
        except OSError:
            add(_MISSING)
            continue
        add((st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns))
    return array("q", values)
