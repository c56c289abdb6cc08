"""Encoders and decoders, one pair per format; every encoder gives the same bytes for an equal value, in any process.

Outputs are content-hashed for early cutoff, so any writer setting left to a default that could change (or any
timestamp, random id, or memory layout leaking into the bytes) would make every run look like a change.
"""

from __future__ import annotations

import importlib
import io
import json
import math
from collections.abc import Mapping
from typing import Any

from skipwise.core.errors import require

from ._annotations import describe, kind_of_type

#: formats' libraries that an extra of skipwise installs (polars and pyarrow are its dependencies)
_EXTRA_OF = {"torch": "torch"}


def need(module: str, package: str | None = None) -> Any:
    """Import an optional library, or raise ImportError saying what to pip install."""
    top = module.partition(".")[0]
    if top in _EXTRA_OF:
        return require(module, _EXTRA_OF[top], f"the {top} format")
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        pkg = package or top
        raise ImportError(f"{module} is needed for this format but is not installed: pip install {pkg}") from exc


def expect(value: Any, kind: str, expected: str, fmt: str) -> None:
    """TypeError unless `value` is of `kind` (checked by module/qualname, so no library is imported)."""
    if kind_of_type(type(value)) != kind:
        raise TypeError(f"format {fmt!r} expects a {expected}, got {describe(type(value))}")


def _arrow_parquet(table: Any) -> bytes:
    pq = need("pyarrow.parquet", "pyarrow")
    buf = io.BytesIO()
    # Every setting that shapes the bytes is spelled out so a changed pyarrow default cannot change them silently.
    # The file carries no timestamp; created_by names the pyarrow version, which is fixed by the environment.
    pq.write_table(
        table,
        buf,
        compression="zstd",
        write_statistics=False,
        version="2.6",
        data_page_version="1.0",
        use_dictionary=True,
        store_schema=True,
        write_page_index=False,
        write_page_checksum=False,
    )
    return buf.getvalue()


def _read_arrow(data: bytes) -> Any:
    pa = need("pyarrow")
    pq = need("pyarrow.parquet", "pyarrow")
    return pq.read_table(pa.BufferReader(data))


def encode_polars(value: Any) -> bytes:
    expect(value, "polars", "polars.DataFrame", "polars")
    buf = io.BytesIO()
    # The settings the engine has always used: changing them would change every stored hash once.
    value.write_parquet(buf, compression="zstd", statistics=False)
    return buf.getvalue()


def decode_polars(data: bytes) -> Any:
    return need("polars").read_parquet(io.BytesIO(data))


def encode_lazy(value: Any) -> bytes:
    expect(value, "lazy", "polars.LazyFrame", "lazy")
    return encode_polars(value.collect())


def decode_lazy(data: bytes) -> Any:
    return decode_polars(data).lazy()


def default_index(df: Any) -> bool:
    """True when a pandas frame's index is the plain RangeIndex(0..n), which carries no information worth storing."""
    pd = need("pandas")
    idx = df.index
    return isinstance(idx, pd.RangeIndex) and idx.start == 0 and idx.step == 1 and idx.name is None


def pandas_to_arrow(df: Any) -> Any:
    """A pandas frame as a pyarrow Table, keeping the index only when it is not the default one."""
    pa = need("pyarrow")
    # A default index carries nothing, so it is dropped; any other one becomes a real column (preserve_index=None
    # would keep a RangeIndex only as pandas metadata, which polars, duckdb and plain pyarrow readers never see).
    return pa.Table.from_pandas(df, preserve_index=not default_index(df))


def encode_pandas(value: Any) -> bytes:
    expect(value, "pandas", "pandas.DataFrame", "pandas")
    return _arrow_parquet(pandas_to_arrow(value))


def decode_pandas(data: bytes) -> Any:
    return _read_arrow(data).to_pandas()


def encode_arrow(value: Any) -> bytes:
    expect(value, "arrow", "pyarrow.Table", "arrow")
    return _arrow_parquet(value)


decode_arrow = _read_arrow


def _json_canonical(value: Any, path: str) -> Any:
    if value is None or isinstance(value, (bool, str, int)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise TypeError(f"JSON cannot hold {value!r} at {path}: replace NaN/inf with None or a finite number")
        return value
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                # json.dumps would turn 1 into "1", so the value would not come back equal.
                raise TypeError(f"JSON object keys must be str, got {describe(type(k))} key {k!r} at {path}")
            out[k] = _json_canonical(v, f"{path}[{k!r}]")
        return out
    if isinstance(value, list):
        return [_json_canonical(v, f"{path}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, tuple):
        raise TypeError(f"JSON cannot hold a tuple at {path}: use a list (a tuple would come back as a list)")
    raise TypeError(f"JSON cannot hold {describe(type(value))} at {path}")


def encode_json(value: Any) -> bytes:
    canonical = _json_canonical(value, "$")
    return json.dumps(canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def decode_json(data: bytes) -> Any:
    return json.loads(data.decode("utf-8"))


def encode_bytes(value: Any) -> bytes:
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise TypeError(f"format 'bytes' expects bytes, bytearray or memoryview, got {describe(type(value))}")
    return bytes(value)


def decode_bytes(data: bytes) -> bytes:
    return bytes(data)


def _torch_canonical(torch: Any, value: Any, path: str) -> Any:
    if isinstance(value, torch.Tensor):
        # torch.save writes a tensor's whole storage, its strides, requires_grad and conj/neg bits: a view of a larger
        # tensor or a transposed one would give other bytes than an equal fresh tensor. A detached contiguous copy
        # with its own storage is the one layout every equal tensor maps to.
        t = value.detach().cpu().resolve_conj().resolve_neg()
        return t.clone(memory_format=torch.contiguous_format)
    if isinstance(value, Mapping):
        bad = [k for k in value if not isinstance(k, str)]
        if bad:
            raise TypeError(f"torch state dict keys must be str, got {describe(type(bad[0]))} key {bad[0]!r} at {path}")
        # Insertion order is pickled, so equal dicts built in another order would otherwise differ.
        return {k: _torch_canonical(torch, value[k], f"{path}[{k!r}]") for k in sorted(value)}
    raise TypeError(
        f"format 'torch' expects a torch.Tensor or a dict of str -> torch.Tensor, got {describe(type(value))} at {path}"
    )


def encode_torch(value: Any) -> bytes:
    torch = need("torch")
    canonical = _torch_canonical(torch, value, "$")
    buf = io.BytesIO()
    # torch.save's zip entries carry fixed 1980 timestamps and a content-derived serialization id, so with the
    # canonical structure above the bytes depend only on the values (checked across processes in the tests).
    torch.save(canonical, buf)
    return buf.getvalue()


def decode_torch(data: bytes) -> Any:
    torch = need("torch")
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
