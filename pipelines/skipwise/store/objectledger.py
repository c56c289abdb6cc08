"""The cost ledger on an object store: immutable objects, never appended to or rewritten.

Layout: ``<store>/ledger/<YYYY-MM-DD>/<run_id>-<uuid4hex>.jsonl``, the local ledger's. An object
cannot grow, so a run's journal writes each batch of lines (a computed partition's record and the
hits before it) as an object of its own, PUT before the partition commits: a worker killed at any
moment keeps the records of everything it committed, on whichever host it ran. Any number of
hosts record at once; names are unique, so no writer ever touches another's object.

Reading lists the ledger (a LIST per 1,000 objects, made again after `LISTING_SECONDS`) and
fetches each object once per host: objects never change, and a local copy is kept by URL and ETag
(`EtagCache`).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Iterable

from skipwise.core.cost import LedgerRecord
from skipwise.store.bucket import BucketPrefix, Entry
from skipwise.store.etagcache import EtagCache
from skipwise.store.ledger import _DAY, Ledger, _check_since, day_of, file_name, lines_of

FOLDER = "ledger"
#: How long a listing of the ledger answers questions (budgets, history) before it is made again:
#: what other hosts record is seen that much later; what this process writes, at once.
LISTING_SECONDS = 5.0


class ObjectLedger(Ledger):
    """The ledger under ``ledger/`` of `objects`, with local copies under `cache_dir`."""

    def __init__(self, objects: BucketPrefix, cache_dir: Path, warn: Callable[[str], None] | None = None) -> None:
        super().__init__(Path(cache_dir), warn=warn)
        self.objects = objects
        self.url = objects.url_of(FOLDER)
        self.cache = EtagCache(Path(cache_dir))
        self._listed: dict[str, Entry] | None = None
        self._listed_at = 0.0
        self._rows: dict[tuple[str, str], list[dict[str, Any]]] = {}

    def append(self, records: Iterable[LedgerRecord]) -> str:  # type: ignore[override]
        """Write `records` as one new object; returns its URL."""
        records = list(records)
        if not records:
            raise ValueError("Ledger.append needs at least one record")
        rel = f"{FOLDER}/{day_of(records)}/{file_name(records[0].run_id)}"
        data = lines_of(records)
        etag = self.objects.put(rel, data)
        self.cache.put(self.objects.url_of(rel), etag, data)
        if self._listed is not None:
            self._listed[rel[len(FOLDER) + 1 :]] = Entry(len(data), etag)
        return self.objects.url_of(rel)

    def journal(self, run_id: str) -> "ObjectJournal":  # type: ignore[override]
        return ObjectJournal(self, run_id)

    def exists(self) -> bool:
        return bool(self._list())

    def _list(self) -> dict[str, Entry]:
        if self._listed is None or time.monotonic() - self._listed_at > LISTING_SECONDS:
            self._listed = {rel[len(FOLDER) + 1 :]: e for rel, e in self.objects.list(FOLDER).items()}
            self._listed_at = time.monotonic()
        return self._listed

    def files(self, since: str | None = None) -> list[str]:  # type: ignore[override]
        """The ledger objects (paths under ``ledger/``), oldest day first; with `since`, only
        the days that can hold records at or after it."""
        since = _check_since(since)
        out = []
        for rel in sorted(self._list()):
            day, _, name = rel.partition("/")
            if not _DAY.match(day) or "/" in name or not name.endswith(".jsonl"):
                continue
            if since is not None and day < since[:10]:
                continue
            out.append(rel)
        return out

    def _rows_of(self, rel: str) -> list[dict[str, Any]]:  # type: ignore[override]
        entry = self._list().get(rel)
        if entry is None:
            return []
        hit = self._rows.get((rel, entry.etag))
        if hit is not None:
            return hit
        url = self.objects.url_of(f"{FOLDER}/{rel}")
        raw = self.cache.get(url, entry.etag)
        if raw is None:
            try:
                raw, etag = self.objects.get(f"{FOLDER}/{rel}")
            except FileNotFoundError:
                return []
            self.cache.put(url, etag, raw)
        rows = self._parse(url, raw)
        self._rows[(rel, entry.etag)] = rows
        return rows


class ObjectJournal:
    """A run's records on the object store: each write is one new object."""

    def __init__(self, ledger: ObjectLedger, run_id: str) -> None:
        self.ledger = ledger
        self.run_id = run_id

    def write(self, records: Iterable[LedgerRecord]) -> None:
        """PUT `records` as one object (nothing for none): from now on they survive anything."""
        records = list(records)
        if records:
            rel = f"{FOLDER}/{day_of(records)}/{file_name(self.run_id)}"
            data = lines_of(records)
            etag = self.ledger.objects.put(rel, data)
            self.ledger.cache.put(self.ledger.objects.url_of(rel), etag, data)
            if self.ledger._listed is not None:
                self.ledger._listed[rel[len(FOLDER) + 1 :]] = Entry(len(data), etag)

    def close(self) -> None:
        """Nothing to close: every write is already durable."""

    def __enter__(self) -> "ObjectJournal":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
