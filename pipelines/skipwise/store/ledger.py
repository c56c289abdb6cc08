"""The cost ledger: an append-only record of every partition computed or skipped, and of what each
materializing process used around its partitions (run records, ``cache = "run"``), kept beside
the data and queryable with DuckDB without the Dagster instance.

Layout: ``<root>/<YYYY-MM-DD>/<run_id>-<uuid4hex>.jsonl``, one JSON object per line (see
`LedgerRecord.to_json_dict`). Two ways to write, neither ever rewrites a file:
- `append` writes one new file whole: a unique temporary name, fsync, rename.
- `journal` gives a run its own file that grows by whole lines as its partitions commit (one
  `write` per batch of lines, written before the partition it records commits; fsync when the
  journal closes), so a run killed at any moment keeps the records of everything it committed. Only the run that created a journal file writes to it.
Any number of writers (processes, hosts sharing a file system) can record at once. The day folder
is the UTC day of the records in the file (a journal starts a new file when the day changes), so
a reader asking for records since a day can skip older folders; the questions every materialize
asks read fewer still (a run's files by name, `run_file`; an asset's history and what a command
wrote by mtime, `skipwise.store.ledgerscope`).

Reading never stops on a damaged file (truncated, torn, not JSON, not UTF-8): its whole lines are
kept, the rest is skipped with one warning naming the file, and nothing is ever rewritten.

    ledger = Ledger("data/ledger")
    ledger.append(records)
    ledger.query("select asset, sum(usd) from ledger group by asset")
"""

from __future__ import annotations

import heapq
import json
import logging
import os
import re
import uuid
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from skipwise.core.cost import CostVector, LedgerRecord
from skipwise.core.errors import SkipwiseError, UsageError
from skipwise.store.files import atomic_write
from skipwise.store.ledgerscope import newest_first, written_since

log = logging.getLogger("skipwise")

_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")

# The schema DuckDB reads with: stable across files written by older or newer versions (a
# missing column is NULL, an unknown one is ignored), and free of type guessing (`ts` stays the
# ISO text that was written, counters stay numbers even when every value seen is null).
_RECORD_COLUMNS = {
    "ts": "VARCHAR",
    "run_id": "VARCHAR",
    "asset": "VARCHAR",
    "partition": "VARCHAR",
    "cache": "VARCHAR",
    "reason": "VARCHAR",
    "fingerprint": "VARCHAR",
    "model": "VARCHAR",
    "experiment": "VARCHAR",
    "team": "VARCHAR",
    "tags": "JSON",
}
_INT_COST = {
    "peak_rss_bytes",
    "process_peak_rss_bytes",
    "partitions_computed",
    "gpu_peak_memory_bytes",
    "bytes_read",
    "bytes_written",
    "requests",
    "get_requests",
    "put_requests",
    "list_requests",
}


def _cost_columns() -> dict[str, str]:
    cols = {}
    for name in CostVector.figure_names():
        cols[name] = "BIGINT" if name in _INT_COST or name.startswith("egress") else "DOUBLE"
    cols["method"] = "VARCHAR"
    return cols


COLUMNS: dict[str, str] = {**_RECORD_COLUMNS, **_cost_columns()}


def _safe(run_id: str) -> str:
    return _UNSAFE.sub("_", run_id).strip("._")[:64] or "run"


def _day_of(ts: str) -> str:
    day = ts[:10]
    if _DAY.match(day):
        return day
    return datetime.now(timezone.utc).strftime("%Y-%m-%d")


def _check_since(since: str | None) -> str | None:
    if since is None:
        return None
    try:
        date.fromisoformat(since[:10])
    except ValueError:
        raise UsageError(
            f"--since {since!r} is not a date",
            hint="give a UTC day as YYYY-MM-DD, e.g. --since 2026-01-31",
        ) from None
    return since


class Ledger:
    """The cost ledger under `root` (a local directory, created on first append)."""

    def __init__(self, root: str | Path, warn: Callable[[str], None] | None = None) -> None:
        self.root = Path(root)
        self.warnings: list[str] = []  # damaged files met while reading, one line each
        self._on_warning = warn
        self._parsed: dict[Path, tuple[tuple[int, int], list[dict[str, Any]]]] = {}
        self._misses: dict[Path, tuple[tuple[int, int], list[dict[str, Any]]]] = {}  # see _misses_of

    # --- writing ------------------------------------------------------------------------------

    def append(self, records: Iterable[LedgerRecord]) -> Path:
        """Write `records` as one new immutable JSONL file and return its path.

        The file appears whole or not at all: written under a unique temporary name in the same
        folder, fsynced, then renamed. Raises ValueError when `records` is empty.
        """
        records = list(records)
        if not records:
            raise ValueError("Ledger.append needs at least one record")
        final = self.root / day_of(records) / file_name(records[0].run_id)
        payload = lines_of(records)
        atomic_write(final, payload)  # a unique name: files are never rewritten, only added
        return final

    def journal(self, run_id: str) -> "Journal":
        """A file of this run's own that records grow into as partitions commit (see module doc)."""
        return Journal(self.root, run_id)

    # --- reading ------------------------------------------------------------------------------

    def files(self, since: str | None = None) -> list[Path]:
        """The ledger files (paths; in an object store, keys under ``ledger/``), oldest day first;
        with `since`, only the days that can hold records at or after it."""
        since = _check_since(since)
        return [self._file(day, name) for day in self._days(since) for name in self._names(day)]

    def _days(self, since: str | None = None) -> list[str]:
        """The day folders, oldest first; with `since`, those that can hold records at or after it."""
        if not self.root.is_dir():
            return []
        days = sorted(p.name for p in self.root.iterdir() if _DAY.match(p.name) and p.is_dir())
        return [d for d in days if since is None or d >= since[:10]]

    def _names(self, day: str) -> list[str]:
        """The names of the ledger files in folder `day`, sorted. Names before paths: a question
        that needs a few files of a long history builds only their paths (a Path costs µs)."""
        try:
            with os.scandir(self.root / day) as entries:
                return sorted(e.name for e in entries if e.name.endswith(".jsonl"))
        except OSError:  # the folder went away since it was listed
            return []

    def _file(self, day: str, name: str) -> Path:
        return self.root / day / name

    def _day_files(self, day: str) -> list[Path]:
        return [self._file(day, name) for name in self._names(day)]

    def query(self, sql: str, params: list[Any] | None = None, *, since: str | None = None) -> list[dict[str, Any]]:
        """Run DuckDB `sql` over a view named ``ledger`` (one row per record, the columns of
        `COLUMNS`) and return the rows as dicts. An empty ledger is an empty view."""
        try:
            import duckdb
        except ImportError as exc:  # pragma: no cover - duckdb is a core dependency
            raise SkipwiseError("the cost ledger needs duckdb", hint="pip install duckdb") from exc
        rows = [row for p in self.files(since) for row in self._rows_of(p)]
        return _run_query(duckdb, rows, sql, params)

    def _rows_of(self, path: Path) -> list[dict[str, Any]]:
        """The records of one file, typed as `COLUMNS`, parsed once per process while the file's
        (size, mtime) stays; a damaged line is skipped with one warning naming the file."""
        try:
            st = path.stat()
            key = (st.st_size, st.st_mtime_ns)
            hit = self._parsed.get(path)
            if hit is not None and hit[0] == key:
                return hit[1]
            raw = path.read_bytes()
        except OSError as exc:
            self._warn(f"{path}: cannot read this ledger file ({exc.strerror}); its records are left out")
            return []
        rows = self._parse(str(path), raw)
        self._parsed[path] = (key, rows)
        return rows

    def _misses_of(self, path: Path) -> list[dict[str, Any]]:
        """The records of one file that can be computations (misses), with the columns a cost
        history reads: only the lines holding the JSON string "miss" are parsed (the hits of a
        large level are most of a file, and a cost history reads none of them; a file without one
        is not even split into lines unless its end is torn); a line that is not a JSON object at
        all is counted as damaged, as a full read would. The whole file's records when they are
        parsed already."""
        try:
            st = path.stat()
        except OSError:
            return self._rows_of(path)  # which says why it is left out
        key = (st.st_size, st.st_mtime_ns)
        for cache in (self._parsed, self._misses):
            hit = cache.get(path)
            if hit is not None and hit[0] == key:
                return hit[1]
        # Every Project of a process (a step's, the run's) asks for the same history: a file is
        # read once per process while its (size, mtime) stays, its warning said again to each.
        shared = _MISSES.get(str(path))
        if shared is not None and shared[0] == key:
            rows = shared[1]
            self._warn_damaged(str(path), shared[2], len(rows))
        else:
            try:
                raw = path.read_bytes()
            except OSError:
                return self._rows_of(path)
            kept, torn = [], 0
            if b'"miss"' in raw or (raw and not raw.endswith(b"}\n")):
                for line in raw.splitlines():
                    if b'"miss"' in line:
                        kept.append(line)
                    elif line.strip() and not (line.lstrip().startswith(b"{") and line.rstrip().endswith(b"}")):
                        torn += 1  # not a JSON object: damaged, and said so as a full read would
                rows = self._parse(str(path), b"\n".join(kept), _HISTORY, torn)
            else:
                # No computation in it, and not torn at its end (where a killed writer leaves a
                # partial line): a large level's hits, most of what a cost history walks past, are
                # not split into lines. A line damaged by hand in its middle is said by a full read.
                rows = []
            if len(_MISSES) >= _MISSES_KEPT:
                _MISSES.clear()
            _MISSES[str(path)] = (key, rows, torn + len(kept) - len(rows))
        self._misses[path] = (key, rows)
        return rows

    def _parse(
        self, name: str, raw: bytes, only: frozenset[str] | None = None, damaged: int = 0
    ) -> list[dict[str, Any]]:
        """The typed records of a file's bytes (`only`: see `_typed`); a line that is not one is
        skipped and counted, with `damaged` more found by the caller, in one warning naming the file."""
        rows, bad = [], damaged
        for line in raw.splitlines():
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except ValueError:  # also UnicodeDecodeError
                obj = None
            row = _typed(obj, only) if isinstance(obj, dict) else None
            if row is None:
                bad += 1
            else:
                rows.append(row)
        self._warn_damaged(name, bad, len(rows))
        return rows

    def _warn_damaged(self, name: str, bad: int, kept: int) -> None:
        if bad:
            self._warn(
                f"{name}: skipped {bad} damaged line(s) of this ledger file (truncated or edited by hand?), "
                f"kept {kept}; the file is left as it is (delete it to silence this)"
            )

    def exists(self) -> bool:
        """Whether anything was ever recorded here."""
        return self.root.is_dir()

    def _warn(self, message: str) -> None:
        if message not in self.warnings:
            self.warnings.append(message)
            (self._on_warning or log.warning)(message)

    def read(self, since: str | None = None) -> list[dict[str, Any]]:
        """Every record (at or after `since`, a UTC day ``YYYY-MM-DD`` or an ISO timestamp),
        oldest first, as flat dicts with `tags` as a dict."""
        where, params = "", []
        if since is not None:
            where, params = "where ts >= ?", [_check_since(since)]
        rows = self.query(
            f"select * from ledger {where} order by ts, run_id, asset, partition",
            params,
            since=since,
        )
        for row in rows:
            tags = row.get("tags")
            row["tags"] = json.loads(tags) if isinstance(tags, str) else (tags or {})
        return rows

    # The questions every materialize asks (budgets, avoided dollars) are answered in Python over
    # the parsed rows: importing DuckDB and Arrow for them cost each step process about 0.5 s.

    def rows(self, since: str | None = None) -> list[dict[str, Any]]:
        """The typed records (the columns of `COLUMNS`, tags as JSON text) of the files that can
        hold records at or after `since`, in file order; filter on ``ts`` yourself."""
        return [row for p in self.files(since) for row in self._rows_of(p)]

    def rows_written_since(self, started: str) -> list[dict[str, Any]]:
        """The typed records of the files created or modified at or after `started` (an ISO UTC
        time), in file order: all a command can have written since it started, without reading
        the day's other files. Filter on ``ts`` yourself."""
        files = self.files(_check_since(started))
        return [row for p in written_since(files, started, self._modified_ns) for row in self._rows_of(p)]

    def _modified_ns(self, path: Path) -> int | None:
        """When `path` was last written (None when it cannot be told: it is then read)."""
        try:
            return path.stat().st_mtime_ns
        except OSError:
            return None

    def last_cost_by_fingerprint(self, asset: str) -> dict[str, float]:
        """For each fingerprint of `asset`, the dollars of its latest computation (miss) with a
        known cost: what a later cache hit on that fingerprint avoided."""
        latest: dict[str, tuple[str, float]] = {}
        for r in self.rows():
            if r["asset"] == asset and r["cache"] == "miss" and r["usd"] is not None:
                fp, ts = r["fingerprint"], r["ts"] or ""
                if fp not in latest or ts >= latest[fp][0]:
                    latest[fp] = (ts, float(r["usd"]))
        return {fp: usd for fp, (_, usd) in latest.items()}

    def history_usd_per_partition(self, asset: str, last: int = 20) -> list[float]:
        """The dollars of the `last` computed partitions of `asset` with a known cost (the latest
        by ``ts``), oldest first: the history `project_run_cost` projects from.

        Every materialize asks this, so files are read newest first and no further than needed:
        once `last` are found and no file left can hold a later record (`newest_first`).
        """
        if last <= 0:
            return []
        read: list[tuple[tuple[str, int], list[tuple[str, float]]]] = []
        latest: list[str] = []  # a heap of the `last` latest times found so far
        for where, f, bound in newest_first(self._days(), self._day_files, self._modified_ns):
            found = _computed(self._misses_of(f), asset)
            read.append((where, found))
            for ts, _ in found:
                if len(latest) < last:
                    heapq.heappush(latest, ts)
                else:
                    heapq.heappushpop(latest, ts)
            if len(latest) == last and latest[0] >= bound:
                break
        # In the ledger's file order, so records of equal times are taken as a read of all would.
        ordered = [t for _, found in sorted(read, key=lambda x: x[0]) for t in found]
        return [usd for _, usd in sorted(ordered, key=lambda t: t[0])[-int(last) :]]

    def spent_usd(self, day: str) -> float:
        """Dollars recorded on UTC `day` (``YYYY-MM-DD``), for the per-day budget."""
        return sum(
            float(r["usd"]) for r in self.rows(since=day) if r["usd"] is not None and (r["ts"] or "")[:10] == day
        )

    def spent_by_asset(self, run_id: str, since: str | None = None) -> dict[str, float]:
        """Dollars `run_id` recorded so far, by asset (run records under their step's asset)."""
        out: dict[str, float] = {}
        for p in self._run_files(run_id, since):
            for r in self._rows_of(p):  # another run's id may be made safe to the same file name
                if r["run_id"] == run_id and r["usd"] is not None:
                    out[str(r["asset"])] = out.get(str(r["asset"]), 0.0) + float(r["usd"])
        return out

    def _run_files(self, run_id: str, since: str | None) -> Iterator[Path]:
        """The files of `run_id` (by name, `run_file`) in the day folders from `since` on."""
        mine = run_file(run_id)
        for day in self._days(_check_since(since)):
            for name in filter(mine.fullmatch, self._names(day)):
                yield self._file(day, name)


#: the history lines of local ledger files read in this process: path -> ((size, mtime), rows, damaged lines)
_MISSES: dict[str, tuple[tuple[int, int], list[dict[str, Any]], int]] = {}
_MISSES_KEPT = 4096


class Journal:
    """One run's ledger file, grown by whole lines; created on the first record."""

    def __init__(self, root: Path, run_id: str) -> None:
        self.root = Path(root)
        self.run_id = run_id
        self.path: Path | None = None
        self._fd: int | None = None
        self._day = ""

    def write(self, records: Iterable[LedgerRecord]) -> None:
        """Append `records` in one write: from now on they survive a kill of this process (the
        kernel holds them). The file is fsynced once, when the journal closes (the step's end),
        not per write (about 1 ms each)."""
        records = list(records)
        if not records:
            return
        day = day_of(records)
        if self._fd is None or day != self._day:
            self.close()
            folder = self.root / day
            folder.mkdir(parents=True, exist_ok=True)
            self.path = folder / file_name(self.run_id)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
            self._day = day
        payload = lines_of(records)
        view = memoryview(payload)
        while view:  # a regular file takes it in one write; loop only for the pathological case
            view = view[os.write(self._fd, view) :]

    def close(self) -> None:
        if self._fd is not None:
            try:
                os.fsync(self._fd)
            finally:
                os.close(self._fd)
                self._fd = None

    def __enter__(self) -> "Journal":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def lines_of(records: Iterable[LedgerRecord]) -> bytes:
    """Records as the JSON lines of a ledger file."""
    return "".join(json.dumps(r.to_json_dict(), separators=(",", ":"), allow_nan=False) + "\n" for r in records).encode(
        "utf-8"
    )


def file_name(run_id: str) -> str:
    """A new ledger file's name: the run's id (made safe) and a unique suffix."""
    return f"{_safe(run_id)}-{uuid.uuid4().hex}.jsonl"


def run_file(run_id: str) -> re.Pattern[str]:
    """The names `file_name` gives the files of `run_id`, and no others: a run whose id starts
    with this one's (``r1`` and ``r1-retry``) has files of its own."""
    return re.compile(re.escape(_safe(run_id)) + r"-[0-9a-f]{32}\.jsonl")


def day_of(records: list[LedgerRecord]) -> str:
    """The day folder of a file holding `records` (the UTC day of the latest)."""
    return max(_day_of(r.ts) for r in records)


def _computed(rows: list[dict[str, Any]], asset: str) -> list[tuple[str, float]]:
    """(ts, dollars) of each computation (miss) of `asset` with a known cost among `rows`."""
    return [
        (r["ts"] or "", float(r["usd"]))
        for r in rows
        if r["asset"] == asset and r["cache"] == "miss" and r["usd"] is not None
    ]


def _typed(obj: dict[str, Any], only: frozenset[str] | None = None) -> dict[str, Any] | None:
    """One record with every column of `COLUMNS` (absent -> None); None when a value has the wrong
    type. With `only`, every column is checked but only those are kept (a JSON column costs a dump)."""
    out: dict[str, Any] = {}
    for name, kind in COLUMNS.items():
        v = obj.get(name)
        keep = only is None or name in only
        if v is None:
            if keep:
                out[name] = None
        elif kind == "JSON":
            if keep:
                out[name] = json.dumps(v, sort_keys=True)
        elif kind == "VARCHAR":
            if keep:
                out[name] = v if isinstance(v, str) else None if isinstance(v, (dict, list)) else str(v)
        elif isinstance(v, bool) or not isinstance(v, (int, float)):
            return None
        elif kind == "BIGINT":
            if isinstance(v, float) and not v.is_integer():
                return None
            if keep:
                out[name] = int(v)
        elif keep:
            out[name] = float(v)
    return out


#: the columns a cost history reads (`_computed`)
_HISTORY = frozenset({"ts", "asset", "cache", "usd"})


_ARROW = {"VARCHAR": "string", "JSON": "string", "DOUBLE": "float64", "BIGINT": "int64"}


def _run_query(duckdb: Any, rows: list[dict[str, Any]], sql: str, params: list[Any] | None) -> list[dict[str, Any]]:
    import pyarrow as pa

    schema = pa.schema([(k, getattr(pa, _ARROW[v])()) for k, v in COLUMNS.items()])
    table = pa.Table.from_pylist(rows, schema=schema)
    con = duckdb.connect()
    try:
        con.register("ledger_rows", table)
        casts = ", ".join(f'"{k}"::JSON as "{k}"' for k, v in COLUMNS.items() if v == "JSON")
        con.execute(f"create view ledger as select * replace ({casts}) from ledger_rows")
        result = con.execute(sql, params or [])
        names = [d[0] for d in result.description]
        return [dict(zip(names, row)) for row in result.fetchall()]
    finally:
        con.close()


def recent_days(n: int) -> str:
    """The UTC day `n` days before today (``YYYY-MM-DD``): a `since` that skips older day folders."""
    from datetime import timedelta

    return (datetime.now(timezone.utc) - timedelta(days=n)).strftime("%Y-%m-%d")


def _sql_str(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"
