"""Leases on object storage: one holder of a partition at a time, across hosts sharing a bucket.

A file lock works only among processes of one host. Two hosts writing one bucket take a lease
instead: a small object ``<partition>/.lease`` created with ``If-None-Match: *`` (so exactly one
creator wins), holding its owner and an expiry. The holder renews it (``If-Match`` on the ETag it
wrote) every third of its term from a background thread while the partition is computed, and
deletes it (``If-Match`` again) when done. A lease whose holder died is taken over once it has
expired, or at once when its owner was a process of this host that no longer exists.

What a lease buys is work not done twice, not correctness: outputs are written under names no
other writer uses, and a manifest (one PUT, atomic) names exactly the output its writer wrote, so
two writers that both commit leave one complete partition either way (the later manifest). A
holder that loses its lease (paused past the term) goes on and commits; the next run sees
whichever manifest came last. Clocks: expiries are compared with the local clock; hosts running
NTP agree to milliseconds, and the term (``$SKIPWISE_LEASE_SECONDS``, default 60 s) dwarfs that.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from contextlib import contextmanager
from typing import Iterator

from skipwise.core.errors import ConfigError
from skipwise.store.bucket import BucketPrefix, Conflict

log = logging.getLogger("skipwise")

DEFAULT_TERM = 60.0
_HOST = socket.gethostname()


def lease_term() -> float:
    """Seconds a lease lasts without renewal (``$SKIPWISE_LEASE_SECONDS``, default 60)."""
    raw = os.environ.get("SKIPWISE_LEASE_SECONDS", "").strip()
    if not raw:
        return DEFAULT_TERM
    try:
        term = float(raw)
    except ValueError:
        term = -1.0
    if term < 1:
        raise ConfigError(
            f"SKIPWISE_LEASE_SECONDS={raw!r} is not a number of seconds >= 1", hint="set it to e.g. 60, or unset it"
        )
    return term


def _abandoned(holder: dict, now: float) -> bool:
    """Whether a lease can be taken over: expired, or held by a dead process of this host."""
    try:
        if float(holder.get("expires", 0)) < now:
            return True
    except (TypeError, ValueError):
        return True  # not a lease we wrote: unreadable means nobody can renew it
    if holder.get("host") == _HOST:
        pid = holder.get("pid")
        if isinstance(pid, int) and pid != os.getpid():
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return True
            except PermissionError:
                return False
    return False


class _Held:
    """A lease this process holds, renewed in the background until released."""

    def __init__(self, store: BucketPrefix, rel: str, etag: str, term: float, owner: str) -> None:
        self.store, self.rel, self.etag, self.term, self.owner = store, rel, etag, term, owner
        self.lost = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew, name=f"lease {rel}", daemon=True)
        self._thread.start()

    def _renew(self) -> None:
        while not self._stop.wait(self.term / 3):
            try:
                self.etag = self.store.put(self.rel, _body(self.owner, self.term), if_match=self.etag)
            except Conflict:
                self.lost = True
                log.warning(
                    "lost the lease %s (held past its term by a pause?): another writer may compute this "
                    "partition too; the later commit wins, both are complete",
                    self.store.url_of(self.rel),
                )
                return
            except Exception as exc:  # noqa: BLE001 - a failed renewal is retried next period
                log.warning("could not renew the lease %s: %s", self.store.url_of(self.rel), exc)

    def release(self) -> None:
        self._stop.set()
        self._thread.join()
        if not self.lost:
            try:
                self.store.delete(self.rel, if_match=self.etag)
            except Conflict:
                pass  # taken over after it expired: the new holder's now, not ours to delete


def _body(owner: str, term: float) -> bytes:
    return json.dumps({"owner": owner, "host": _HOST, "pid": os.getpid(), "expires": time.time() + term}).encode()


@contextmanager
def lease(store: BucketPrefix, rel: str, wait: bool = True, term: float | None = None) -> Iterator[bool]:
    """Hold the lease object `rel` in `store` while the block runs (yields True). Another holder
    makes it wait (polling, up to 2 s apart), or with `wait=False` yield False at once."""
    term = lease_term() if term is None else term
    owner = f"{_HOST}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
    pause = 0.05
    held: _Held | None = None
    while held is None:
        try:
            held = _Held(store, rel, store.put(rel, _body(owner, term), if_absent=True), term, owner)
            break
        except Conflict:
            pass  # someone holds it: whether they still may is read next
        try:
            data, etag = store.get(rel)
        except FileNotFoundError:
            continue  # released meanwhile: try to create it again
        try:
            holder = json.loads(data)
        except ValueError:
            holder = {}
        if _abandoned(holder if isinstance(holder, dict) else {}, time.time()):
            try:
                held = _Held(store, rel, store.put(rel, _body(owner, term), if_match=etag), term, owner)
                break
            except Conflict:
                continue  # another process took it over first
        if not wait:
            yield False
            return
        time.sleep(pause)
        pause = min(pause * 2, 2.0)
    try:
        yield True
    finally:
        held.release()
