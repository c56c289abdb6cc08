"""What one partition's work cost: I/O counters, the cost vector, and the ledger record.

Everything here is a plain value. Measuring is done by `skipwise.engine.metering.Meter`, pricing by
`skipwise.core.pricing.Prices`, storing by `skipwise.store.ledger.Ledger`.

A figure that could not be measured is ``None`` and is left out of metadata: an unknown cost is
never reported as a free one.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import threading
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from typing import Any, Mapping

from skipwise.core import metakeys as mk
from skipwise.core.units import format_bytes, format_seconds, format_usd, significant

# Distance classes for bytes moved between compute and storage, nearest first.
EGRESS_CLASSES: tuple[str, ...] = ("same_host", "same_region", "cross_region", "internet")

# Run tags read for attribution (Dagster run tags, `dagster job launch --tags`).
MODEL_TAG = mk.MODEL
EXPERIMENT_TAG = mk.EXPERIMENT
TEAM_TAG = "team"
TEAM_TAG_ALIASES: tuple[str, ...] = ("team", mk.TEAM)
BUDGET_OVERRIDE_TAG = mk.BUDGET_OVERRIDE

METADATA_PREFIX = "cost/"


def _check_egress_class(egress_class: str) -> None:
    if egress_class not in EGRESS_CLASSES:
        raise ValueError(f"unknown egress class {egress_class!r}; use one of {', '.join(EGRESS_CLASSES)}")


@dataclass(frozen=True)
class IOSnapshot:
    """The totals of an `IOCounter` at one instant; subtract two to get what happened between."""

    bytes_read: int = 0
    bytes_written: int = 0
    get_requests: int = 0
    put_requests: int = 0
    list_requests: int = 0
    egress_same_host_bytes: int = 0
    egress_same_region_bytes: int = 0
    egress_cross_region_bytes: int = 0
    egress_internet_bytes: int = 0

    @property
    def requests(self) -> int:
        """All requests: GET + PUT + LIST."""
        return self.get_requests + self.put_requests + self.list_requests

    @property
    def egress_bytes(self) -> dict[str, int]:
        """Bytes moved per distance class, keyed like `EGRESS_CLASSES`."""
        return {c: getattr(self, f"egress_{c}_bytes") for c in EGRESS_CLASSES}

    def __sub__(self, other: IOSnapshot) -> IOSnapshot:
        if not isinstance(other, IOSnapshot):
            return NotImplemented
        return IOSnapshot(**{f.name: getattr(self, f.name) - getattr(other, f.name) for f in fields(self)})

    def __add__(self, other: IOSnapshot) -> IOSnapshot:
        if not isinstance(other, IOSnapshot):
            return NotImplemented
        return IOSnapshot(**{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)})


class IOCounter:
    """Running totals of bytes and requests, incremented by the storage layer.

    One counter is shared by every store call of a process; a `Meter` takes a snapshot at the
    start and the end of a partition and keeps the difference. Increments take a lock, so
    threads may share a counter.

    Every byte moved is counted once in `bytes_read`/`bytes_written` and once in
    `egress_bytes[<class>]`, the class being how far it travelled (``same_host`` for a local
    disk, ``internet`` for a public endpoint).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.bytes_read = 0
        self.bytes_written = 0
        self.get_requests = 0
        self.put_requests = 0
        self.list_requests = 0
        self.egress_bytes: dict[str, int] = {c: 0 for c in EGRESS_CLASSES}

    def add_read(self, n: int, egress_class: str = "same_host", *, requests: int = 1) -> None:
        """Count `n` bytes read from storage in `requests` GET requests."""
        _check_egress_class(egress_class)
        with self._lock:
            self.bytes_read += n
            self.get_requests += requests
            self.egress_bytes[egress_class] += n

    def add_write(self, n: int, egress_class: str = "same_host", *, requests: int = 1) -> None:
        """Count `n` bytes written to storage in `requests` PUT requests."""
        _check_egress_class(egress_class)
        with self._lock:
            self.bytes_written += n
            self.put_requests += requests
            self.egress_bytes[egress_class] += n

    def add_list(self, requests: int = 1) -> None:
        """Count a LIST request (a directory listing, an `ls`/`find` on a bucket prefix)."""
        with self._lock:
            self.list_requests += requests

    def snapshot(self) -> IOSnapshot:
        """The totals so far, as a frozen value."""
        with self._lock:
            return IOSnapshot(
                bytes_read=self.bytes_read,
                bytes_written=self.bytes_written,
                get_requests=self.get_requests,
                put_requests=self.put_requests,
                list_requests=self.list_requests,
                **{f"egress_{c}_bytes": self.egress_bytes[c] for c in EGRESS_CLASSES},
            )


_INT_FIELDS = frozenset(
    {
        "peak_rss_bytes",
        "process_peak_rss_bytes",
        "gpu_peak_memory_bytes",
        "partitions_computed",
        "bytes_read",
        "bytes_written",
        "requests",
        "get_requests",
        "put_requests",
        "list_requests",
        "egress_bytes",
        "egress_same_host_bytes",
        "egress_same_region_bytes",
        "egress_cross_region_bytes",
        "egress_internet_bytes",
    }
)
# Peaks combine by max: two partitions that each peaked at 1 GB did not need 2 GB.
_MAX_FIELDS = frozenset({"peak_rss_bytes", "process_peak_rss_bytes", "gpu_peak_memory_bytes"})

# Kinds of cost some work cannot incur (GPU on a CPU run, fees of a local disk): a zero there
# says "not this kind of work", and is left out of Dagster metadata (see `CostVector.to_metadata`).
_ZERO_MEANS_NOT_INCURRED = frozenset(
    {
        "gpu_seconds",
        "gpu_peak_memory_bytes",
        "egress_bytes",
        "egress_same_region_bytes",
        "egress_cross_region_bytes",
        "egress_internet_bytes",
        "list_requests",
        "usd_egress",
        "usd_requests",
        "usd_storage",
        "overhead_start_cpu_seconds",
        "overhead_plan_cpu_seconds",
        "overhead_load_cpu_seconds",
        "overhead_ledger_cpu_seconds",
        "overhead_reads_cpu_seconds",
        "overhead_other_cpu_seconds",
    }
)

# Breakdowns kept in the ledger only: on the asset page each would be one more chart of a total shown already.
_LEDGER_ONLY = frozenset({"get_requests", "put_requests", "list_requests"})

#: What a ledger record is: a partition computed (miss), skipped (hit) or restored, a partition
#: recomputed by `skipwise verify` to check its committed output (verify: nothing was committed),
#: or a process's run record (the CPU, wall and memory the process used outside its metered partitions).
CACHE_KINDS: tuple[str, ...] = ("hit", "miss", "restore", "verify", "run")


@dataclass(frozen=True)
class CostVector:
    """What a piece of work cost, in physical units and (once priced) in dollars.

    Every figure is optional: ``None`` means "not measured", never zero. `method` says how the
    figures were measured, e.g.
    ``"wall: monotonic; cpu: process+children times; rss: VmHWM reset per partition; gpu: none"``.

    `egress_bytes` is the bytes that left the host (same region + cross region + internet);
    `egress_same_host_bytes` is local traffic, kept for completeness and priced at 0 by default.
    `requests` is the total of `get_requests`, `put_requests` and `list_requests`.

    Memory: for a partition, `peak_rss_bytes` is its own peak above the process's resident
    memory when it started (what the partition added), and `process_peak_rss_bytes` the whole
    process's peak during it. For a run record (`LedgerRecord.cache == "run"`),
    `peak_rss_bytes` is the process's peak. `rss_byte_seconds`, when set, is the memory held
    (bytes x seconds) and is what pricing charges instead of ``peak_rss_bytes x wall_seconds``.

    Run records only: `process_cpu_seconds`/`process_wall_seconds` are what the process used
    since its previous run record (or its start), `partition_*` the part of it its metered
    partitions recorded, `cpu_seconds`/`wall_seconds` the rest (the overhead), split into
    `overhead_{start,plan,load,ledger,reads,other}_cpu_seconds` (`reads`: input partitions read for
    a partition outside the run, such as the look-back days before a range's first day).
    """

    wall_seconds: float | None = None
    cpu_seconds: float | None = None
    peak_rss_bytes: int | None = None
    process_peak_rss_bytes: int | None = None
    rss_byte_seconds: float | None = None
    gpu_seconds: float | None = None
    gpu_peak_memory_bytes: int | None = None
    bytes_read: int | None = None
    bytes_written: int | None = None
    requests: int | None = None
    get_requests: int | None = None
    put_requests: int | None = None
    list_requests: int | None = None
    egress_bytes: int | None = None
    egress_same_host_bytes: int | None = None
    egress_same_region_bytes: int | None = None
    egress_cross_region_bytes: int | None = None
    egress_internet_bytes: int | None = None
    process_cpu_seconds: float | None = None
    process_wall_seconds: float | None = None
    partition_cpu_seconds: float | None = None
    partition_wall_seconds: float | None = None
    partitions_computed: int | None = None
    overhead_start_cpu_seconds: float | None = None
    overhead_plan_cpu_seconds: float | None = None
    overhead_load_cpu_seconds: float | None = None
    overhead_ledger_cpu_seconds: float | None = None
    overhead_reads_cpu_seconds: float | None = None
    overhead_other_cpu_seconds: float | None = None
    usd: float | None = None
    usd_compute: float | None = None
    usd_egress: float | None = None
    usd_requests: float | None = None
    usd_storage: float | None = None
    usd_avoided: float | None = None
    method: str = ""

    @classmethod
    def figure_names(cls) -> tuple[str, ...]:
        """The names of the numeric fields (everything except `method`)."""
        return tuple(name for name in _cost_fields() if name != "method")

    @classmethod
    def from_io(cls, delta: IOSnapshot, method: str = "") -> CostVector:
        """The I/O part of a cost vector from the difference of two `IOCounter` snapshots."""
        off_host = delta.egress_same_region_bytes + delta.egress_cross_region_bytes + delta.egress_internet_bytes
        return cls(
            bytes_read=delta.bytes_read,
            bytes_written=delta.bytes_written,
            requests=delta.requests,
            get_requests=delta.get_requests,
            put_requests=delta.put_requests,
            list_requests=delta.list_requests,
            egress_bytes=off_host,
            egress_same_host_bytes=delta.egress_same_host_bytes,
            egress_same_region_bytes=delta.egress_same_region_bytes,
            egress_cross_region_bytes=delta.egress_cross_region_bytes,
            egress_internet_bytes=delta.egress_internet_bytes,
            method=method,
        )

    def replace(self, **changes: Any) -> CostVector:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)

    def measured(self) -> dict[str, float | int]:
        """The figures that were measured (not None), by field name."""
        return {n: v for n in self.figure_names() if (v := getattr(self, n)) is not None}

    def to_metadata(self) -> dict[str, float | int | str]:
        """Dagster-ready metadata: ``cost/<field>`` for measured figures (floats to 6 significant
        digits: plotted as they are, read without 16 digits of noise), ``cost/summary`` (one line a
        person reads, see `summary`), and ``cost/method``.

        A figure measured as zero for a kind of cost the work could not incur (GPU on a CPU run;
        egress, request and storage fees on a local disk; overhead phases that did not happen) is
        left out, so the asset page is not a wall of flat charts; so are the requests by kind
        (``cost/requests`` is their total) and the same-host bytes when they are all the bytes
        read and written. The ledger keeps every figure."""
        out: dict[str, float | int | str] = {}
        measured = self.measured()
        for n, v in measured.items():
            if (
                (v == 0 and n in _ZERO_MEANS_NOT_INCURRED)
                or n in _LEDGER_ONLY
                or (n == "egress_same_host_bytes" and self._all_local())
            ):
                continue
            out[METADATA_PREFIX + n] = significant(v, 6) if isinstance(v, float) else v
        text = self.summary()
        if text:
            out[METADATA_PREFIX + "summary"] = text
        if self.method:
            out[METADATA_PREFIX + "method"] = self.method
        return out

    def _all_local(self) -> bool:
        moved = (self.bytes_read or 0) + (self.bytes_written or 0)
        return self.egress_same_host_bytes == moved and not self.egress_bytes

    def summary(self) -> str:
        """One line: dollars (and avoided), then seconds, memory and bytes with their units, e.g.
        ``$0.00000580 (compute $0.000000101, requests $0.00000570): 0.212 s wall, 0.18 s CPU, 36.0
        MiB peak, read 2.1 MiB, wrote 120.0 KiB in 14 requests``. Unmeasured figures are left out."""
        parts = [
            f"{label} {format_usd(v)}"
            for label, v in (
                ("compute", self.usd_compute),
                ("egress", self.usd_egress),
                ("requests", self.usd_requests),
                ("storage", self.usd_storage),
            )
            if v
        ]
        head = ""
        if self.usd is not None:
            head = format_usd(self.usd) + (f" ({', '.join(parts)})" if parts else "")
        if self.usd_avoided is not None:
            head = (head + ", " if head else "") + f"{format_usd(self.usd_avoided)} avoided"
        figures = [
            f"{format_seconds(v)} {label}"
            for label, v in (("wall", self.wall_seconds), ("CPU", self.cpu_seconds), ("GPU", self.gpu_seconds or None))
            if v is not None
        ]
        if self.peak_rss_bytes is not None:
            figures.append(f"{format_bytes(self.peak_rss_bytes)} peak")
        if self.bytes_read is not None:
            figures.append(f"read {format_bytes(self.bytes_read)}")
        if self.bytes_written is not None:
            figures.append(
                f"wrote {format_bytes(self.bytes_written)}" + (f" in {self.requests} requests" if self.requests else "")
            )
        if self.egress_bytes:
            figures.append(f"{format_bytes(self.egress_bytes)} off the host")
        return ": ".join(p for p in (head, ", ".join(figures)) if p)

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any]) -> CostVector:
        """Read back what `to_metadata` wrote; other keys are ignored.

        Values may be plain numbers or objects with a ``.value`` (Dagster's metadata values).
        """
        flat = {}
        for key, value in metadata.items():
            if isinstance(key, str) and key.startswith(METADATA_PREFIX):
                flat[key[len(METADATA_PREFIX) :]] = getattr(value, "value", value)
        return cls.from_record(flat)

    def to_record(self) -> dict[str, float | int | str | None]:
        """A flat dict of every field (None included), for the ledger."""
        figures = self.__dict__  # a frozen dataclass's fields, read without a getattr each (hot: every record)
        return {name: figures[name] for name in _cost_fields()}

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> CostVector:
        """Build from a flat dict (a ledger row); keys that are not cost fields are ignored."""
        kwargs: dict[str, Any] = {}
        for name in cls.figure_names():
            value = record.get(name)
            if value is None or (isinstance(value, float) and math.isnan(value)):
                continue
            kwargs[name] = int(value) if name in _INT_FIELDS else float(value)
        method = record.get("method")
        return cls(**kwargs, method=str(method) if method else "")

    def __add__(self, other: CostVector) -> CostVector:
        """Sum field by field: None + None = None, None + x = x; peaks take the max."""
        if not isinstance(other, CostVector):
            return NotImplemented
        kwargs: dict[str, Any] = {}
        for name in self.figure_names():
            a, b = getattr(self, name), getattr(other, name)
            if a is None:
                kwargs[name] = b
            elif b is None:
                kwargs[name] = a
            else:
                kwargs[name] = max(a, b) if name in _MAX_FIELDS else a + b
        return CostVector(**kwargs, method=_join_methods(self.method, other.method))

    def __radd__(self, other: Any) -> CostVector:
        # Lets `sum(vectors)` work with its default start of 0.
        if other == 0:
            return self
        return NotImplemented


def _join_methods(a: str, b: str) -> str:
    if not a or a == b:
        return b or a
    if not b or b in a.split(" | "):
        return a
    return f"{a} | {b}"


def utc_now_iso() -> str:
    """The current time as ISO-8601 UTC with a trailing ``Z``: ``2026-03-01T12:00:00.123456Z``."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _tag(tags: Mapping[str, str], *names: str) -> str | None:
    for name in names:
        if tags.get(name):
            return tags[name]
    return None


@functools.cache
def _cost_fields() -> tuple[str, ...]:
    """`CostVector`'s field names in order (`dataclasses.fields` builds them anew at every call,
    and every ledger record asks)."""
    return tuple(f.name for f in fields(CostVector))


@dataclass(frozen=True)
class LedgerRecord:
    """One line of the cost ledger: a partition that was computed (miss) or skipped (hit), or a
    process's run record (``cache="run"``: what the process used outside its partitions).

    `ts` is ISO-8601 UTC (see `utc_now_iso`); `partition` is None for an unpartitioned asset
    (and for a run record, whose `asset` is the step's asset, or "" for the orchestrating
    process); `tags` are the run's tags (``skipwise/model``, ``skipwise/experiment``, ``team``, ...).
    """

    ts: str
    run_id: str
    asset: str
    partition: str | None
    cache: str
    reason: str
    fingerprint: str
    tags: Mapping[str, str] = field(default_factory=dict)
    cost: CostVector = field(default_factory=CostVector)

    def __post_init__(self) -> None:
        if self.cache not in CACHE_KINDS:
            kinds = ", ".join(repr(k) for k in CACHE_KINDS[:-1]) + f" or {CACHE_KINDS[-1]!r}"
            raise ValueError(f"LedgerRecord.cache must be {kinds}, not {self.cache!r}")

    def to_json_dict(self) -> dict[str, Any]:
        """A flat JSON-ready dict: record fields, `model`/`experiment`/`team` columns taken
        from the tags (None when absent), the tags as a nested object, then every cost field."""
        tags = {str(k): str(v) for k, v in self.tags.items()}
        out: dict[str, Any] = {
            "ts": self.ts,
            "run_id": self.run_id,
            "asset": self.asset,
            "partition": self.partition,
            "cache": self.cache,
            "reason": self.reason,
            "fingerprint": self.fingerprint,
            "model": _tag(tags, MODEL_TAG),
            "experiment": _tag(tags, EXPERIMENT_TAG),
            "team": _tag(tags, *TEAM_TAG_ALIASES),
            "tags": tags,
        }
        out.update(self.cost.to_record())
        return out

    @classmethod
    def from_json_dict(cls, row: Mapping[str, Any]) -> LedgerRecord:
        """Read back a dict written by `to_json_dict` (or a row from `Ledger.read`)."""
        return cls(
            ts=row["ts"],
            run_id=row["run_id"],
            asset=row["asset"],
            partition=row.get("partition"),
            cache=row["cache"],
            reason=row.get("reason") or "",
            fingerprint=row.get("fingerprint") or "",
            tags=dict(row.get("tags") or {}),
            cost=CostVector.from_record(row),
        )
