"""Partition storage on the local filesystem.

Local disk bills no request: its reads and writes are counted as ``same_host`` bytes with zero
GET/PUT requests (request fees apply to object stores only, see `skipwise.core.locations`).

Layout, per asset partition:  data/<layer>/<asset>/<key>/<fingerprint>.<ext>  plus  manifest.json.
Outputs are addressed by fingerprint (an output computed once can be found again); the manifest,
written last and atomically, says which one is current. A crash leaves the old manifest (pointing at
the old, intact output) or the new one: never a partial partition.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from skipwise.core.cost import IOCounter
from skipwise.core.errors import InputError
from skipwise.core.hashing import sha256_bytes
from skipwise.core.manifest import Manifest
from skipwise.core.partitions import folder_key, key_folder, validate_name
from skipwise.core.plan import OutputState
from skipwise.store.files import atomic_write
from skipwise.store.partitionlock import hold
from skipwise.store.paths import ensure_inside, is_inside
from skipwise.store.statcache import StatCache

VERSIONS = "versions"  # kept versions of a partition's manifest, by fingerprint
MANIFEST = "manifest.json"
_HEX = frozenset("0123456789abcdef")


def version_names(fingerprint: str) -> list[str]:
    """The names under ``versions/`` of the kept version with `fingerprint`, the one written
    first, or none for a fingerprint that names no file. A fingerprint is hex, or a value the IO
    manager stored, ``stored:<sha256>``: its kept version is ``stored-<sha256>.json`` (a colon
    is no file name on Windows, and needs quoting in shells); stores written before then hold
    ``stored:<sha256>.json``, read too."""
    kind, _, digest = fingerprint.rpartition(":")
    if not digest or not set(digest) <= _HEX or kind not in ("", "stored"):
        return []
    if not kind:
        return [f"{VERSIONS}/{digest}.json"]
    return [f"{VERSIONS}/{kind}-{digest}.json", f"{VERSIONS}/{fingerprint}.json"]


class LocalPartitionStore:
    """Reads and writes partitions and their manifests under `data_root`, counting bytes moved."""

    remote = False  # local disk (`ObjectPartitionStore` is the object-store one)

    def __init__(
        self, data_root: Path, statcache: StatCache, io: IOCounter | None = None, read_roots: tuple[Path, ...] = ()
    ) -> None:
        self.data_root = Path(data_root)
        self.real_root = os.path.realpath(self.data_root)
        # Input files may also live here (the project, DVC's cache when files are links into it).
        self.read_roots = (self.real_root, *(os.path.realpath(r) for r in read_roots))
        self.statcache = statcache
        self.io = io or IOCounter()
        self._checked: set[str] = set()  # asset folders already found inside the root (planning is hot)

    def digest_key(self) -> bytes:
        """The key of this store's observed digests (`skipwise.core.observed`): made once, at random,
        in data/.skipwise/digest.key (readable by its owner only), and kept with the data."""
        path = self.data_root / ".skipwise" / "digest.key"
        ensure_inside(path.parent, self.real_root, str(path.parent))
        with contextlib.suppress(FileNotFoundError):
            return path.read_bytes()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".digest.key.{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(os.urandom(32).hex().encode())
        try:
            with contextlib.suppress(FileExistsError):  # the first process to make one wins; the others read it
                os.link(tmp, path)
        finally:
            os.unlink(tmp)
        return path.read_bytes()

    def partition_dir(self, layer: str, asset: str, key: str) -> Path:
        """Directory of one partition; refuses hostile keys and folders that link out of the data root."""
        d = self.data_root / validate_name(layer, "layer") / validate_name(asset, "asset name") / key_folder(key)
        return ensure_inside(d, self.real_root, f"partition folder {d}")

    def _readable_dir(self, layer: str, asset: str, key: str) -> str:
        # The hot read path: the asset folder is resolved once per store, the partition folder is
        # one lstat (a link there is resolved and checked like any other).
        base = os.path.join(self.data_root, layer, asset)
        if base not in self._checked:
            ensure_inside(base, self.real_root, f"asset folder {base}")
            self._checked.add(base)
        d = os.path.join(base, key_folder(key))
        if os.path.islink(d):
            ensure_inside(d, self.real_root, f"partition folder {d}")
        return d

    def read_manifest(self, layer: str, asset: str, key: str) -> Manifest | None:
        """The committed manifest, or None if there is none. ValueError if it is unreadable."""
        # Plain strings on this hot path: planning reads one manifest per partition.
        path = os.path.join(self._readable_dir(layer, asset, key), MANIFEST)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except FileNotFoundError:
            return None
        except OSError as exc:  # ELOOP: the manifest itself is a symlink
            raise ValueError(f"{path}: not a regular file ({exc.strerror}); a manifest is never a link") from None
        with os.fdopen(fd, encoding="utf-8") as f:
            text = f.read()
        try:
            m = Manifest.from_json(text)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{path}: {exc}") from None
        if m.asset != asset or m.partition != key:
            raise ValueError(f"{path}: manifest is for {m.asset}[{m.partition}], not {asset}[{key}]")
        return m

    def read_manifest_at(self, folder: Path) -> Manifest | None:
        """The manifest in partition folder `folder` (any key), or None if absent or unreadable."""
        try:
            fd = os.open(os.path.join(folder, MANIFEST), os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            return None
        with os.fdopen(fd, encoding="utf-8") as f:
            try:
                return Manifest.from_json(f.read())
            except (ValueError, TypeError):
                return None

    def materialized_keys(self, layer: str, asset: str) -> list[str]:
        """Keys of the partitions of `asset` that have a manifest (any order)."""
        base = self.data_root / layer / asset
        if not base.is_dir():
            return []
        keys = []
        for p in base.iterdir():
            if not (p / MANIFEST).is_file():
                continue
            key = folder_key(p.name)
            if key is None:  # a hashed (long) key: its manifest says which
                m = self.read_manifest_at(p)
                key = m.partition if m else None
            if key is not None:
                keys.append(key)
        return keys

    def files_of(self, layer: str, asset: str) -> dict[str, dict[str, int]]:
        """key -> {name: size} of every partition folder of `asset` (names relative to the folder,
        ``versions/<fp>.json`` too; no hidden files: locks, temporaries). Folders that are links,
        and hashed (long) keys, are left out."""
        base = self.data_root / layer / asset
        out: dict[str, dict[str, int]] = {}
        if not base.is_dir() or base.is_symlink():
            return out
        for folder in sorted(base.iterdir()):
            key = folder_key(folder.name)
            if key is None or not folder.is_dir() or folder.is_symlink():
                continue
            names = {f.name: f.stat().st_size for f in folder.iterdir() if f.is_file() and not f.name.startswith(".")}
            versions = folder / VERSIONS
            if versions.is_dir() and not versions.is_symlink():
                names.update({f"{VERSIONS}/{f.name}": f.stat().st_size for f in versions.glob("*.json") if f.is_file()})
            out[key] = names
        return out

    def read_named(self, layer: str, asset: str, key: str, name: str) -> bytes | None:
        """The bytes of `name` in a partition's folder (None if absent or a link)."""
        path = self.partition_dir(layer, asset, key) / name
        if path.is_symlink():
            return None
        try:
            return path.read_bytes()
        except OSError:
            return None

    def where(self, layer: str, asset: str, key: str, name: str) -> str:
        """`name` in a partition's folder, as a path relative to the project (its parent)."""
        return str((self.partition_dir(layer, asset, key) / name).relative_to(self.data_root.parent))

    def remove(self, layer: str, asset: str, key: str, names: list[str]) -> None:
        """Delete `names` from a partition's folder (call it holding the partition's lock)."""
        d = self.partition_dir(layer, asset, key)
        for name in names:
            (d / name).unlink(missing_ok=True)

    def layer_of(self, asset: str) -> str:
        """The data/ subfolder holding `asset` (asset names are unique across groups), "" if none."""
        try:
            layers = sorted(os.listdir(self.data_root))
        except FileNotFoundError:
            return ""
        return next(
            (
                layer
                for layer in layers
                if not layer.startswith(".") and os.path.isdir(os.path.join(self.data_root, layer, asset))
            ),
            "",
        )

    def output_path(self, layer: str, asset: str, key: str, manifest: Manifest) -> Path:
        """Where the manifest's output lives."""
        name = Path(manifest.output).name  # a manifest can never point outside its partition
        return self.partition_dir(layer, asset, key) / name

    def local_copy(self, layer: str, asset: str, key: str, manifest: Manifest) -> Path:
        """The output's own file (local disk needs no copy)."""
        return ensure_inside(self.output_path(layer, asset, key, manifest), self.real_root)

    def output_state(self, layer: str, asset: str, key: str, manifest: Manifest) -> str:
        """ "ok" when the output is there with the recorded hash, else "missing" or "changed".

        Cheap first: a stat against the stat cache; the bytes are re-hashed only if the file moved.
        """
        path = os.path.join(self._readable_dir(layer, asset, key), os.path.basename(manifest.output))
        if os.path.islink(path) and not is_inside(path, (self.real_root,)):
            return OutputState.CHANGED
        try:
            if os.stat(path).st_size != manifest.output_size:
                return OutputState.CHANGED
            return (
                OutputState.OK if self.statcache.digest(path, "sha256") == manifest.output_hash else OutputState.CHANGED
            )
        except FileNotFoundError:
            return OutputState.MISSING

    def read_output(self, layer: str, asset: str, key: str, manifest: Manifest) -> bytes:
        """The output bytes of a committed partition (metered)."""
        path = ensure_inside(self.output_path(layer, asset, key, manifest), self.real_root)
        data = path.read_bytes()
        self.io.add_read(len(data), requests=0)  # local disk bills no request
        return data

    def check_readable(self, path: Path | str) -> None:
        """Refuse an input file that resolves outside the read roots (a symlink out of the project)."""
        if not is_inside(path, self.read_roots):
            raise InputError(
                f"{path} resolves to {os.path.realpath(path)}, outside the project and DVC's cache",
                hint="replace the symlink with the file itself (`dvc checkout` restores DVC-tracked files)",
            )

    def read_file(self, path: Path) -> bytes:
        """Any input file's bytes (metered); never through a symlink that leaves the read roots."""
        self.check_readable(path)
        data = Path(path).read_bytes()
        self.io.add_read(len(data), requests=0)
        return data

    def write_output(
        self, layer: str, asset: str, key: str, fingerprint: str, ext: str, data: bytes
    ) -> tuple[str, str, int]:
        """Write an output atomically under its fingerprint; returns (file name, sha256, size)."""
        name = f"{fingerprint}.{ext}"
        path = self.partition_dir(layer, asset, key) / name
        # The directory's fsync comes with the manifest's (same folder, next); should a crash keep
        # the manifest and lose the output, planning checks the output against it and recomputes.
        atomic_write(path, data, sync_dir=False)
        self.io.add_write(len(data), requests=0)
        sha = sha256_bytes(data)
        self.statcache.remember(path, "sha256", sha)
        return name, sha, len(data)

    def _versions_dir(self, d: Path) -> Path:
        """Partition folder `d`'s kept versions folder; refused when it is a link out of the data root."""
        versions = d / VERSIONS
        if os.path.islink(versions):
            ensure_inside(versions, self.real_root, f"kept versions folder {versions}")
        return versions

    def sweep_temp(self, layer: str, asset: str, key: str) -> int:
        """Remove temporary files a killed writer left in this partition; call it holding the lock."""
        d = self.partition_dir(layer, asset, key)
        removed = 0
        for folder in (d, self._versions_dir(d)):
            try:
                names = [e.name for e in os.scandir(folder)]
            except (FileNotFoundError, NotADirectoryError):
                continue
            for name in names:
                if name.startswith(".") and ".tmp-" in name[1:]:  # `.<name>.tmp-<pid>-<id>` (atomic_write)
                    (folder / name).unlink(missing_ok=True)  # removes a link itself, never what it points at
                    removed += 1
        return removed

    def commit(self, layer: str, asset: str, manifest: Manifest, keep: bool = True) -> None:
        """Write the manifest last: from now on the partition is done. With `keep`, a copy goes to
        ``versions/<fingerprint>.json`` first: the kept version a later run restores instead of
        recomputing (an index: written without fsync, and a lost or damaged one only means a
        recompute)."""
        d = self.partition_dir(layer, asset, manifest.partition)
        data = manifest.to_json().encode()
        names = version_names(manifest.fingerprint)
        if keep and names:
            self._versions_dir(d)  # never written through a link out of the data root
            atomic_write(d / names[0], data, sync_dir=False, sync=False)
            self.io.add_write(len(data), requests=0)
        atomic_write(d / MANIFEST, data)
        self.io.add_write(len(data), requests=0)

    def read_version(self, layer: str, asset: str, key: str, fingerprint: str) -> Manifest | None:
        """The kept version of a partition with `fingerprint`, or None (absent, damaged, a link)."""
        folder = self._readable_dir(layer, asset, key) if version_names(fingerprint) else ""
        if folder and os.path.islink(os.path.join(folder, VERSIONS)):
            return None  # a kept version is never read through a link
        for name in version_names(fingerprint):
            path = os.path.join(folder, name)
            try:
                if os.path.islink(path):
                    return None
                with open(path, "rb") as f:
                    return Manifest.from_json(f.read().decode("utf-8"))
            except FileNotFoundError:
                continue  # an older store's name, if any
            except (OSError, ValueError, TypeError):
                return None
        return None

    def lock(self, layer: str, asset: str, key: str, wait: bool = True) -> contextlib.AbstractContextManager[bool]:
        """Hold an exclusive lock on one partition (other processes on this host wait). With
        `wait=False`, yields False at once instead of waiting when another process holds it. A
        partition left with nothing but its lock loses its folder again
        (`skipwise.store.partitionlock.hold`)."""
        return hold(self.partition_dir(layer, asset, key), self.data_root, wait)
