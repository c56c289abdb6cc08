"""What a partition's body reads: its upstream partitions, decoded, each once per run and charged
once to the partition it belongs to.

Raw partitions come through the project's locality (the workspace, the input cache or a DVC
remote), asset partitions from the store by the manifest that committed them; a damaged file,
a changed upstream or frames of one input with different columns (schema drift, naming the odd
file and the usual schema) stop the partition with an error that names the file and the fix.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from skipwise import formats
from skipwise.core import metakeys as mk
from skipwise.core.errors import InputError
from skipwise.core.partitions import key_folder
from skipwise.core.spec import Asset, Plain, Source
from skipwise.engine.metering import measure
from skipwise.engine.processmeter import process_meter

_FORMAT_OF_EXT = {".parquet": "polars", ".json": "json", ".bin": "bytes", ".pt": "torch"}


class Inputs:
    """The inputs of `project`'s partitions (`skipwise.engine.project.Project`: its graph, store,
    manifests, locality and I/O counter), with the decoded partitions of the last few reads."""

    def __init__(self, project: Any) -> None:
        self.project = project
        # Decoded inputs by (name, key, content version): a 7-day window reads each day once, not 8 times.
        # (input, key, version) -> [decoded value, what reading it cost, charged to a partition yet]
        self._decoded: dict[tuple[str, str, str | None], list[Any]] = {}
        # input -> key -> the columns of each frame decoded for it (the usual schema is the commonest)
        self._schemas_seen: dict[str, dict[str, tuple[str, ...]]] = {}

    def load(
        self,
        asset: Asset,
        dep_name: str,
        versions: Mapping[str, str | None],
        key: str | None = None,
        charge: list[Any] | None = None,
    ) -> dict[str, Any]:
        """The decoded upstream partitions `asset` reads from `dep_name` for its partition `key`:
        input key -> value, in order. Polars frames of one input must share a schema (schema
        drift names the odd file).

        Each input partition is decoded once per run and charged once (its measured read goes
        to `charge`, the partition's list) to the partition it belongs to: its home, the
        partition of `asset` with the same key. A look-back day read for another partition is
        charged to its home when the home reads it, so a partition costs the same alone and
        inside a range; read for a partition whose home is not in the run, it stays the
        process's overhead (phase ``reads``). An input key that `asset` has no partition of (a
        daily source of a monthly or unpartitioned asset) is charged to the partition that reads
        it first: its only reader in the usual shapes.
        """
        up = self.project.graph.node(dep_name)
        values: list[Any] = []
        own_key = [*versions][-1] if versions else None  # windows end on the partition's own key
        for k, v in versions.items():
            if isinstance(up, Source) and v == "absent":
                if k == own_key:
                    what, fix = self.project.planner.missing_raw(up, k)
                    raise InputError(f"{asset.name}[{key}] cannot run: {what}", hint=fix)
                continue  # a look-back day before the data starts
            entry = self._decoded.get((up.name, k, v))
            has_home = charge is not None and asset.partitions is not None and k in asset.partitions
            if entry is None:
                with measure(self.project.io) as share:
                    value = self._read(asset, up, k, v)
                entry = self._decoded[(up.name, k, v)] = [value, share[0], not has_home or k == key]
                if entry[2] and charge is not None:
                    charge.append(share[0])
                elif not entry[2]:  # a look-back day: its home pays for it
                    process_meter().add_reads(share[0].cpu_seconds)
                while len(self._decoded) > 64:  # a window's worth of days, a few inputs wide
                    self._decoded.pop(next(iter(self._decoded)))
            elif (
                has_home and charge is not None and k == key and not entry[2]
            ):  # read earlier for another partition: ours
                charge.append(entry[1])
                process_meter().add_reads(-entry[1].cpu_seconds)
                entry[2] = True
            values.append((k, entry[0]))
        if not all(type(f).__module__.startswith("polars") and type(f).__name__ == "DataFrame" for _, f in values):
            return dict(values)
        # The usual schema is the one seen most often in every frame this project decoded for `up`
        # (a run over many partitions knows it), not the partition's own day, which may be the odd one.
        seen = self._schemas_seen.setdefault(up.name, {})
        for k, frame in values:
            seen[k] = tuple(frame.columns)
        if len({tuple(f.columns) for _, f in values}) > 1:
            from collections import Counter

            fix = (
                f"fix or re-ingest the odd file, then `dvc add {up.path}` again"
                if isinstance(up, Source)
                else "fix the odd partition's code or data and materialize it again"
            )
            ranked = Counter(seen.values()).most_common()
            if len(ranked) > 1 and ranked[0][1] == ranked[1][1]:  # a tie: the files alone cannot tell
                firsts: dict[tuple[str, ...], str] = {}
                for k, f in values:
                    firsts.setdefault(tuple(f.columns), k)
                (a, ka), (b, kb) = list(firsts.items())[:2]
                fa, fb = self.describe(up, ka), self.describe(up, kb)
                if set(a) == set(b):
                    diff = f"the same columns in another order: {fa} has {list(a)}, {fb} has {list(b)}"
                else:
                    diff = f"columns only in {fa}: {sorted(set(a) - set(b))}; only in {fb}: {sorted(set(b) - set(a))}"
                raise InputError(
                    f"schema drift in {up.name}: {fa} and {fb} differ and no other file tells which is usual: {diff}",
                    hint=f"check both files; {fix}",
                )
            usual, count = ranked[0]
            odd = [k for k, f in values if tuple(f.columns) != usual]
            k = odd[0]
            cols = seen[k]
            missing, extra = sorted(set(usual) - set(cols)), sorted(set(cols) - set(usual))
            drift = (
                f"missing columns {missing}, unexpected {extra}"
                if missing or extra
                else f"columns in another order: {list(cols)}"
            )
            example = next((kk for kk, f in values if tuple(f.columns) == usual), None) or next(
                kk for kk, c in seen.items() if c == usual
            )
            also = (
                f"; also odd: {', '.join(self.describe(up, o) for o in odd[1:4])}{' ...' if len(odd) > 4 else ''}"
                if len(odd) > 1
                else ""
            )
            raise InputError(
                f"schema drift in {self.describe(up, k)}: {drift} (the usual schema of {up.name}, seen in {count} of "
                f"{len(seen)} partitions read, e.g. {self.describe(up, example)}){also}",
                hint=fix,
            )
        return dict(values)

    def _read(self, asset: Asset, up: Asset | Source | Plain, key: str, version: str | None) -> Any:
        """Read (and decode) one input partition; versions are content hashes, so the result is cacheable."""
        if isinstance(up, Source) and up.many:
            return self._read_files(up, key, version)
        if isinstance(up, Source):
            data = self.project.locality.read_source(
                up, key, version
            )  # the workspace, the input cache or the DVC remote
            fmt = formats.get("polars")
        else:
            m = self.project.manifest(up, key)
            if m is None or f"sha256:{m.output_hash}" != version:
                if isinstance(up, Plain) and not up.stored:
                    raise InputError(
                        f"{asset.name} reads {up.name}, a plain asset not stored by sw.IOManager",
                        hint=f'give {up.name} io_manager_key="skipwise", or list it in deps= instead of a parameter',
                    )
                raise InputError(f"{up.name}[{key}] changed while {asset.name} was reading it", hint="run again")
            data = self.project.store.read_output(up.layer, up.name, key, m)
            fmt = formats.get(str(m.metadata.get(mk.FORMAT) or _FORMAT_OF_EXT.get(Path(m.output).suffix, "bytes")))
        try:
            return fmt.decode(data)
        except Exception as exc:  # the libraries raise several types for a damaged file
            fix = (
                f"delete {up.name}[{key}]'s folder and materialize it again"
                if not isinstance(up, Source)
                else f"upload a readable file to {up.shown(key)}"
                if up.url
                else f"restore it with `dvc checkout {up.path}`"
            )
            raise InputError(
                f"{self.describe(up, key)} is not readable {fmt.ext if fmt.ext in ('parquet', 'json') else fmt.name} ({type(exc).__name__}: {exc})",
                hint=fix,
            ) from None

    def _read_files(self, up: Source, key: str, version: str | None) -> Any:
        """A partition of several raw files as one polars frame: each decoded, then concatenated
        in path order (the input's annotation converts it as it converts any raw partition)."""
        fmt = formats.get("polars")
        frames = []
        for i, data in enumerate(self.project.locality.read_source_files(up, key, version)):
            try:
                frames.append(fmt.decode(data))
            except Exception as exc:  # the libraries raise several types for a damaged file
                raise InputError(
                    f"file {i + 1} of {up.shown(key)} is not readable parquet ({type(exc).__name__}: {exc})",
                    hint=f"upload readable files to {up.shown(key)}"
                    if up.url
                    else f"restore them with `dvc checkout {up.path}`",
                ) from None
        return formats.combine({str(i): f for i, f in enumerate(frames)}, None)  # frames: concatenated

    def describe(self, up: Asset | Source | Plain, key: str) -> str:
        if isinstance(up, Source):
            return up.shown(key)

        return f"{up.name}[{key}] ({Path('data', up.layer, up.name, key_folder(key))})"
