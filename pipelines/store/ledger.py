"""The cost ledger: an append-only record of every partition computed or skipped, kept beside
the data and queryable with DuckDB without the Dagster instance.

Layout: ``<root>/<YYYY-MM-DD>/<run_id>-<uuid4hex>.jsonl``, one JSON object per line (see
`LedgerRecord.to_json_dict`). Each `append` writes one new file under a unique temporary name,
fsyncs it and renames it into place; no file is ever appended to or rewritten, so any number of
writers (processes, hosts sharing a file system) can record at once, and a reader sees whole
files only. The day folder is the UTC day of the newest record in the file, so a reader asking
for records since a day can skip older folders.

    ledger = Ledger("data/ledger")
    ledger.append(records)
    ledger.query("select asset, sum(usd) from ledger group by asset")
"""

from __future__ import annotations

import json
import re
import uuid
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any, Iterable

from pipelines.store.files import atomic_write
from pipelines.core.cost import CostVector, LedgerRecord
from pipelines.core.errors import SkipwiseError

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
    "peak_rss_bytes", "gpu_peak_memory_bytes", "bytes_read", "bytes_written", "requests",
    "get_requests", "put_requests", "list_requests",
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
        raise SkipwiseError(
            f"--since {since!r} is not a date",
            hint="give a UTC day as YYYY-MM-DD, e.g. --since 2026-01-31",
        ) from None
    return since


class Ledger:
    """The cost ledger under `root` (a local directory, created on first append)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    # --- writing ------------------------------------------------------------------------------

    def append(self, records: Iterable[LedgerRecord]) -> Path:
        """Write `records` as one new immutable JSONL file and return its path.

        The file appears whole or not at all: written under a unique temporary name in the same
        folder, fsynced, then renamed. Raises ValueError when `records` is empty.
        """
        records = list(records)
        if not records:
            raise ValueError("Ledger.append needs at least one record")
        day = max(_day_of(r.ts) for r in records)
        folder = self.root / day
        final = folder / f"{_safe(records[0].run_id)}-{uuid.uuid4().hex}.jsonl"
        payload = "".join(
            json.dumps(r.to_json_dict(), separators=(",", ":"), allow_nan=False) + "\n"
            for r in records
        ).encode("utf-8")
        atomic_write(final, payload)  # a unique name: files are never rewritten, only added
        return final

    # --- reading ------------------------------------------------------------------------------

    def files(self, since: str | None = None) -> list[Path]:
        """The ledger files, oldest day first; with `since`, only the days that can hold
        records at or after it."""
        since = _check_since(since)
        if not self.root.is_dir():
            return []
        out = []
        for folder in sorted(p for p in self.root.iterdir() if p.is_dir() and _DAY.match(p.name)):
            if since is not None and folder.name < since[:10]:
                continue
            out.extend(sorted(folder.glob("*.jsonl")))
        return out

    def query(
        self, sql: str, params: list[Any] | None = None, *, since: str | None = None
    ) -> list[dict[str, Any]]:
        """Run DuckDB `sql` over a view named ``ledger`` (one row per record, the columns of
        `COLUMNS`) and return the rows as dicts. An empty ledger is an empty view."""
        try:
            import duckdb
        except ImportError as exc:  # pragma: no cover - duckdb is a core dependency
            raise SkipwiseError(
                "the cost ledger needs duckdb", hint="pip install duckdb"
            ) from exc
        files = self.files(since)
        con = duckdb.connect()
        try:
            if files:
                columns = "{" + ", ".join(f"'{k}': '{v}'" for k, v in COLUMNS.items()) + "}"
                paths = "[" + ", ".join(_sql_str(str(p)) for p in files) + "]"
                con.execute(
                    "create view ledger as select * from read_json_auto("
                    f"{paths}, format='newline_delimited', union_by_name=true, "
                    f"columns={columns})"
                )
            else:
                cols = ", ".join(f'"{k}" {v}' for k, v in COLUMNS.items())
                con.execute(f"create table ledger ({cols})")
            result = con.execute(sql, params or [])
            names = [d[0] for d in result.description]
            return [dict(zip(names, row)) for row in result.fetchall()]
        finally:
            con.close()

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

    def last_cost_by_fingerprint(self, asset: str) -> dict[str, float]:
        """For each fingerprint of `asset`, the dollars of its latest computation (miss) with a
        known cost: what a later cache hit on that fingerprint avoided."""
        rows = self.query(
            "select fingerprint, arg_max(usd, ts) as usd from ledger "
            "where asset = ? and cache = 'miss' and usd is not null group by fingerprint",
            [asset],
        )
        return {r["fingerprint"]: float(r["usd"]) for r in rows}

    def history_usd_per_partition(self, asset: str, last: int = 20) -> list[float]:
        """The dollars of the `last` computed partitions of `asset` with a known cost, oldest
        first: the history `project_run_cost` projects from."""
        rows = self.query(
            "select usd from (select usd, ts from ledger "
            "where asset = ? and cache = 'miss' and usd is not null "
            "order by ts desc limit ?) order by ts",
            [asset, int(last)],
        )
        return [float(r["usd"]) for r in rows]

    def spent_usd(self, day: str) -> float:
        """Dollars recorded on UTC `day` (``YYYY-MM-DD``), for the per-day budget."""
        rows = self.query(
            "select coalesce(sum(usd), 0) as usd from ledger where substr(ts, 1, 10) = ?",
            [day],
            since=day,
        )
        return float(rows[0]["usd"]) if rows else 0.0


def _sql_str(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"
