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
from skipwise.store.ledger import _DAY, Ledger, day_of, file_name, lines_of

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
        self._grouped: tuple[dict[str, Entry], int, dict[str, list[str]]] | None = None

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

    def _days(self, since: str | None = None) -> list[str]:
        return [d for d in self._by_day() if since is None or d >= since[:10]]

    def _names(self, day: str) -> list[str]:
        return self._by_day().get(day, [])

    def _file(self, day: str, name: str) -> str:  # type: ignore[override]
        return f"{day}/{name}"

    def _by_day(self) -> dict[str, list[str]]:
        """The listing's ledger objects by day folder (oldest first), names sorted; grouped again
        only when the listing changed (made again, or grown by this process's writes)."""
        listing = self._list()
        if self._grouped is None or self._grouped[0] is not listing or self._grouped[1] != len(listing):
            out: dict[str, list[str]] = {}
            for rel in sorted(listing):
                day, _, name = rel.partition("/")
                if _DAY.match(day) and "/" not in name and name.endswith(".jsonl"):
                    out.setdefault(day, []).append(name)
            self._grouped = (listing, len(listing), out)
        return self._grouped[2]

    def _modified_ns(self, rel: str) -> int | None:  # type: ignore[override]
        """Unknown: a listing here carries no times, so questions about recent writes read the
        whole day folders that can hold them."""
        return None

    def _misses_of(self, rel: str) -> list[dict[str, Any]]:  # type: ignore[override]
        return self._rows_of(rel)  # an object is fetched whole, and its records kept per etag

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
