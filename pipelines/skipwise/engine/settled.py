"""Assets a plan found wholly up to date, remembered so that the next plan of an unchanged asset is
one pass of `lstat` calls instead of a manifest read and a fingerprint per partition.

After a full plan (every key of the asset) in which every partition has a manifest, at least one
was SKIP and nothing warned, `Settled.remember` writes `data/.skipwise/settled/<layer>/<asset>.json`:
the keys, their fingerprints and the dollars their manifests recorded (what a hit avoids), the
partitions the plan did not find up to date (pending: every later plan decides them afresh, until
one finds them up to date and brings the record up to date), a token of everything
else a decision depends on (the asset's and its inputs' declarations, the code version, the params,
the library's scheme, what the partitions observably read, as they are now) and the paths of every
file a decision read: the asset's manifests and outputs, its derived inputs' manifests, its raw
inputs' folders (every file in them, recursively, and what their links point at, with DVC's record
of them: the `.dvc` file of what it tracks, `dvc.lock`), the suspects file, `skipwise.toml` and
DVC's config (those paths in `<asset>.files`, read first, so that their stats are being taken
while the record is read). Every stat is the one taken before the plan decided (an output, named
by the manifest the plan read, must be the very file whose hash it checked), so a change while it
decides shows next time. `Settled.check` answers SKIP for every key only when the token is the
same and every one of those files has the same inode, size, modification and change time (the
change time cannot be set back from user space): any difference, a missing file, a new file in a
raw folder, an object-store source or store, an unversioned plain input, sends the asset through
the full plan, which writes a new record if it is again up to date.

When the token is the same but files moved, the change is narrowed instead of planning every
partition again: beside the record, `<asset>.inputs.json` keeps each file's stats, the version of
every input partition the asset's partitions read and which partitions read it. A partition is
decided afresh when its own manifest or output moved, when an upstream manifest it reads moved,
when one of its raw inputs has a new version now (every raw input the record holds is versioned
again, through the stat cache, when its source's folder or DVC record moved), or when an input it
reads is planned to run first; every other partition keeps its remembered decision. Anything the
narrowing cannot place (another file of the record moved, an upstream partition added or removed,
a planned input no partition read) is a full plan.

The record is derived state: deleting it costs one full plan, never a wrong answer.
"""

from __future__ import annotations

import base64
import gc
import hashlib
import json
import os
import uuid
from array import array
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from skipwise.adapters.dvc.manifest import tracked_target
from skipwise.core.hashing import digest
from skipwise.core.manifest import SCHEME_VERSION
from skipwise.core.partitions import key_folder
from skipwise.core.plan import SKIP, Decision
from skipwise.core.spec import Asset, Plain, Source
from skipwise.core.version import __version__
from skipwise.engine.narrowing import Reads, narrowed
from skipwise.store.files import atomic_write
from skipwise.store.partitions import MANIFEST
from skipwise.store.stats import StatPass, lstat_all, stat_all


#: bump when what a record holds, or what its token covers, changes
FORMAT = 8


@dataclass(frozen=True)
class Remembered:
    """A record's answer for every key: `decisions` in key order, of which those at `suspects`
    (indices) are only placeholders, to be decided afresh; `record` and `inputs` are what the
    answer came from (for `Settled.update`)."""

    decisions: list[Decision]
    suspects: list[int]
    usd: list[Any]  # by key, the dollars its manifest recorded (a suspect's: as its manifest was before)
    moved: bool  # a file the record depends on moved (the record is then brought up to date)
    pending: list[int]  # indices the record's plan did not find up to date (among the suspects)
    record: dict[str, Any]
    files: list[str]  # the files the record depends on, relative to the root (`Settled._files`)
    inputs: dict[str, Reads] | None
    stats: "array[int]"
    sources: dict[str, Any]


@dataclass(frozen=True)
class Taken:
    """What a record of an asset depends on, taken before a full plan decides (`Settled.taken`):
    the stats of every file but the outputs (named by the manifests the plan is about to read; ""
    in `files`) and the raw inputs' digests. A change while the plan decides then shows next time."""

    files: list[str]
    stats: "array[int]"
    sources: dict[str, Any]


class Settled:
    """The up-to-date records of one project's assets (local store and DVC sources only)."""

    def __init__(self, project: Any) -> None:  # the engine's Project, which builds this (engine/project.py)
        self.project = project
        self.root = project.root
        self.folder = project.data_root / ".skipwise" / "settled"

    # -- answering ----------------------------------------------------------------------------------

    def check(self, asset: Asset, keys: list[str], pending: Collection[tuple[str, str]] = ()) -> Remembered | None:
        """What `asset`'s last full plan remembered for each of `keys`, with the partitions a change
        since then may reach marked as suspects (none when nothing moved); None: plan every partition.
        `pending`: upstream partitions planned to run first (their readers are suspects)."""
        if not self._applies(asset):
            return None
        listed = self._read_files(asset)
        if listed is None:
            return None
        ident, files = listed
        # The record's files are taken by helpers while this process reads the rest of the record,
        # walks the raw inputs and makes the answer (an answer not given costs a little; it is then
        # a full plan anyway).
        with StatPass(files, str(self.root)) as taking:
            record = self._read(self._path(asset))
            if (
                record is None
                or record.get("format") != FORMAT
                or record.get("id") != ident
                or record.get("keys") != keys
            ):
                return None
            deps = [str(d) for d in record.get("observed_deps", [])]
            if record.get("token") != self._token(asset, deps):
                return None
            fingerprints = record.get("fingerprints")
            reasons = record.get("reasons")
            usd = record.get("usd")
            if (
                not isinstance(fingerprints, list)
                or not isinstance(reasons, list)
                or not isinstance(usd, list)
                or len(fingerprints) != len(keys)
                or len(usd) != len(keys)
                or len(files) < 2 * len(keys)
            ):
                return None
            unsettled = record.get("pending")
            if not isinstance(unsettled, list) or not all(isinstance(i, int) and 0 <= i < len(keys) for i in unsettled):
                return None
            if len(reasons) < len(keys):
                reasons = reasons + reasons[-1:] * (len(keys) - len(reasons))
            name = asset.name
            sources = self._sources(asset)
            # Many small objects at once: the collector's passes over them would find nothing to free.
            paused = gc.isenabled()
            gc.disable()
            try:
                decisions = [Decision(name, key, SKIP, why, fp) for key, why, fp in zip(keys, reasons, fingerprints)]
            finally:
                if paused:
                    gc.enable()
            stats = taking.result()
        inputs = {d.name for d in asset.deps}
        waiting = [(n, k) for n, k in pending if n in inputs]
        moved = record.get("stats") != _digest(stats) or record.get("sources") != sources
        suspects: list[int] = []
        reads = None
        if moved or waiting or unsettled:  # a pending partition is decided afresh whatever moved
            details = self._read(self._inputs_path(asset))
            if details is None or details.get("id") != record.get("id"):
                return None
            try:
                before = array("q", base64.b64decode(details["stats"]))
                extra_keys: list[Any] = details["extra_keys"]
                reads = {name: Reads.load(data) for name, data in details["inputs"].items()}
            except (KeyError, TypeError, ValueError, AttributeError):
                return None
            found = narrowed(self.project, asset, keys, record, reads, before, extra_keys, stats, sources, waiting)
            if found is None:
                return None
            suspects = sorted({*found, *unsettled})
        return Remembered(decisions, suspects, usd, moved, sorted(unsettled), record, files, reads, stats, sources)

    @staticmethod
    def _read(path: Path) -> dict[str, Any] | None:
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return record if isinstance(record, dict) else None

    def _read_files(self, asset: Asset) -> tuple[str, list[str]] | None:
        """The id of the record the files file belongs to, and the files it lists."""
        try:
            data = self._files_path(asset).read_bytes()
        except OSError:
            return None
        ident, newline, listed = data.partition(b"\n")
        if not newline or not listed:
            return None
        return ident.decode("ascii", "replace"), os.fsdecode(listed).split("\0")

    # -- remembering --------------------------------------------------------------------------------

    def taken(self, asset: Asset, keys: list[str]) -> Taken | None:
        """What a record of `asset` will depend on, as it is before a full plan of `keys` decides
        (for `remember`); None where no record is kept."""
        if not self._applies(asset):
            return None
        files, _ = self._files(asset, keys, [""] * len(keys))
        with StatPass(files, str(self.root)) as taking:
            sources = self._sources(asset)
            return Taken(files, taking.result(), sources)

    def remember(self, asset: Asset, keys: list[str], decisions: list[Decision], taken: Taken | None) -> None:
        """Record that `decisions` (one per key of `keys`) are what a full plan found, `taken`
        before it decided: those not SKIP as pending. Nothing when none was SKIP (the record would
        answer nothing) or a partition has no manifest."""
        if taken is None or len(decisions) != len(keys) or all(d.action != SKIP for d in decisions):
            return
        manifests = [self.project.manifest(asset, key) for key in keys]
        if any(m is None for m in manifests):
            return
        self._write(asset, keys, decisions, {i: m for i, m in enumerate(manifests)}, None, taken)

    def update(self, asset: Asset, keys: list[str], decisions: list[Decision], found: Remembered) -> None:
        """After a narrowed plan decided the suspects afresh: the record with the suspects' manifests
        as they are now (those not SKIP pending), reading no other partition's; nothing when no file
        moved and the same partitions are pending."""
        if not self._applies(asset) or found.inputs is None:
            return
        if not found.moved and [i for i in found.suspects if decisions[i].action != SKIP] == found.pending:
            return
        manifests = {i: self.project.manifest(asset, keys[i]) for i in found.suspects}
        if any(m is None for m in manifests.values()):
            return
        self._write(asset, keys, decisions, manifests, found, None)

    def _write(
        self,
        asset: Asset,
        keys: list[str],
        decisions: list[Decision],
        manifests: dict[int, Any],
        before: Remembered | None,
        taken: Taken | None,
    ) -> None:
        """Write the record and its inputs file from `manifests` (by key index; with `before`,
        only the partitions that changed, the rest coming from `before`). Every file keeps the
        stats taken before the plan decided (`before`'s, or `taken`'s); an output whose stats are
        taken now must be the very file its hash was checked in (the stat cache's entry), or
        nothing is written."""
        outputs: list[str] = []
        usd: list[Any] = list(before.usd) if before is not None else [None] * len(keys)
        deps: set[str] = set(before.record.get("observed_deps", [])) if before is not None else set()
        old_files: list[str] = before.files if before is not None else []
        fresh: dict[str, dict[str, tuple[Any, list[int]]]] = {d.name: {} for d in asset.deps}
        reads = before.inputs if before is not None and before.inputs is not None else {}
        for i, key in enumerate(keys):
            m = manifests.get(i)
            if m is None:
                outputs.append(os.path.basename(old_files[2 * i + 1]))
                continue
            deps |= set(m.observed)
            outputs.append(os.path.basename(m.output))
            usd[i] = m.usd
            for dep, read in m.inputs.items():
                for k, v in read.items():
                    if before is None:
                        fresh.setdefault(dep, {}).setdefault(k, (v, []))[1].append(i)
                        continue
                    at = reads[dep].index(k) if dep in reads else None
                    if at is None:
                        return  # the suspect reads a partition no one read before: the next full plan records it
                    reads[dep].versions[at] = v
        if before is None:
            reads = {dep: Reads.of(read) for dep, read in fresh.items()}
        files, extra_keys = self._files(asset, keys, outputs)
        if before is not None:
            old_stats, sources = before.stats, before.sources
        elif taken is not None:
            old_files, old_stats, sources = taken.files, taken.stats, taken.sources
        else:
            return
        if len(old_files) != len(files):
            return  # an upstream partition added or removed meanwhile: the next plan is a full one
        stats = array("q", old_stats)
        fresh_outputs: list[int] = []  # key indices whose output's stats are taken now
        for j, (new, old) in enumerate(zip(files, old_files)):
            if new == old:
                continue
            if j >= 2 * len(keys) or j % 2 == 0:
                return  # a file other than an output is not the one whose stats were taken
            fresh_outputs.append(j // 2)
        paths = self._absolute([files[2 * i + 1] for i in fresh_outputs])
        now = lstat_all(paths)
        recorded = self.project.statcache.recorded
        for n, (i, output) in enumerate(zip(fresh_outputs, paths)):
            ino, size, mtime, ctime = now[4 * n : 4 * n + 4]
            m = manifests.get(i)
            entry = recorded(output, "sha256")
            if m is None or entry != ((ino, mtime, ctime, size), m.output_hash):
                return  # not the file whose hash the plan checked: the next plan checks it again
            stats[4 * (2 * i + 1) : 4 * (2 * i + 2)] = now[4 * n : 4 * n + 4]
        observed = sorted(deps)
        reasons = sorted({d.reason for d in decisions})
        ident = str(uuid.uuid4())
        record = {
            "format": FORMAT,
            "id": ident,
            "asset": asset.name,
            "keys": keys,
            "fingerprints": [d.fingerprint for d in decisions],
            "usd": usd,
            "pending": [i for i, d in enumerate(decisions) if d.action != SKIP],
            "reasons": [d.reason for d in decisions] if len(reasons) > 1 else reasons,
            "observed_deps": observed,
            "token": self._token(asset, observed),
            "stats": _digest(stats),
            "sources": sources,
        }
        details = {
            "id": ident,
            "stats": base64.b64encode(stats.tobytes()).decode("ascii"),
            "extra_keys": extra_keys,
            "inputs": {dep: r.dump() for dep, r in reads.items()},
        }
        path = self._path(asset)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # The files and inputs files first: a record is only used with those of its own id.
            listed = os.fsencode("\0".join(files))
            atomic_write(self._files_path(asset), ident.encode("ascii") + b"\n" + listed)
            atomic_write(self._inputs_path(asset), json.dumps(details, separators=(",", ":")).encode())
            atomic_write(path, json.dumps(record, separators=(",", ":")).encode())
        except OSError:
            pass  # a cache: without it the next plan is a full one

    # -- what a record depends on ------------------------------------------------------------------

    def _files(self, asset: Asset, keys: list[str], outputs: list[str]) -> tuple[list[str], list[Any]]:
        """The files a record of `asset` depends on (relative to the root): each key's manifest and
        output (`outputs`: their names), then the upstream assets' manifests and folders, then the
        configuration; and what each file after the keys' is (`[asset, key]` of an upstream
        manifest, else None)."""
        store = self.project.store
        files: list[str] = []
        for key, output in zip(keys, outputs):
            folder = os.path.join("data", asset.layer, asset.name, key_folder(key))
            files += [os.path.join(folder, MANIFEST), os.path.join(folder, output) if output else ""]
        extra_keys: list[Any] = []
        for dep in asset.deps:
            up = self.project.graph.node(dep.name)
            if isinstance(up, Asset):
                for k in sorted(store.materialized_keys(up.layer, up.name)):
                    files.append(os.path.join("data", up.layer, up.name, key_folder(k), MANIFEST))
                    extra_keys.append([up.name, k])
                files.append(os.path.join("data", up.layer, up.name))  # a partition added or removed
                extra_keys.append(None)
        # verify's suspects, the locations config, DVC's config (which remote a source reads when the
        # workspace lacks its file)
        files += [
            os.path.join("data", ".skipwise", "suspects.json"),
            "skipwise.toml",
            os.path.join(".dvc", "config"),
            os.path.join(".dvc", "config.local"),
        ]
        extra_keys += [None] * 4
        return files, extra_keys

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

    def _inputs_path(self, asset: Asset) -> Path:
        return self.folder / asset.layer / f"{asset.name}.inputs.json"

    def _files_path(self, asset: Asset) -> Path:
        """The files a record depends on, NUL-separated after its id: read, and handed to the
        helpers that take their stats, before the record itself is parsed."""
        return self.folder / asset.layer / f"{asset.name}.files"

    def _absolute(self, files: list[str]) -> list[str]:
        root = str(self.root) + os.sep
        return [root + rel for rel in files]

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
            names = [*map(str, records), str(folder)]
            h.update("\0".join(names).encode("utf-8", "surrogateescape"))
            h.update(lstat_all(names).tobytes())
            h.update(stat_all([str(folder)]).tobytes())  # what the folder (or file) is, when it is a link
            _walk(str(folder), h)
            out[up.name] = h.hexdigest()
        return out


def _digest(stats: "array[int]") -> str:
    """A digest of (inode, size, mtime, ctime) of each file a record depends on."""
    return hashlib.sha256(stats.tobytes()).hexdigest()


def _walk(folder: str, h: Any, seen: set[str] | None = None) -> None:
    """Every entry under `folder`, with its stats, into `h`. Entries come in the order the folder
    lists them: stable while the folder is unchanged, and a change of the folder changes its own
    times, so a new order only ever costs a full plan. A link counts with what it points at, which
    can change while the link does not: a linked file with its target's stats too, a linked folder
    walked through (each real folder once, so a loop ends)."""
    if seen is None:
        seen = {os.path.realpath(folder)}
    try:
        entries = list(os.scandir(folder))
    except OSError:
        h.update(b"\0unreadable\n")
        return
    names = [e.name for e in entries]
    h.update("\0".join(names).encode("utf-8", "surrogateescape"))
    h.update(lstat_all(names, folder).tobytes())
    links = [e for e in entries if e.is_symlink()]
    if links:
        h.update(b"\0links\0")
        h.update(stat_all([e.path for e in links]).tobytes())
    for e in entries:
        if e.is_dir(follow_symlinks=False):
            h.update(b"\0dir\0")
            _walk(e.path, h, seen)
    for e in links:
        real = os.path.realpath(e.path)
        if os.path.isdir(real) and real not in seen:
            seen.add(real)
            h.update(b"\0linked dir\0")
            _walk(e.path, h, seen)
