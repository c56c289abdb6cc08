"""Leases on a real S3-compatible server (moto_server on 127.0.0.1): one holder at a time across
processes and hosts, taken over once abandoned, renewed while held."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
from skipwise.core.cost import IOCounter
from skipwise.store.bucket import BucketPrefix, Conflict
from skipwise.store.leases import lease

from bench.s3server import FAKE_CREDENTIALS, S3Server

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    server = S3Server.start(tmp_path_factory.mktemp("moto"))
    saved = {k: os.environ.get(k) for k in (*FAKE_CREDENTIALS, "AWS_ENDPOINT_URL")}
    os.environ.update({**FAKE_CREDENTIALS, "AWS_ENDPOINT_URL": server.endpoint})
    try:
        server.make_bucket("leases", "us-east-1")
        yield BucketPrefix("s3://leases/p", IOCounter(), "same_region")
    finally:
        server.stop()
        for k, v in saved.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)


def test_conditional_writes_are_honoured(store):
    etag = store.put("x", b"1", if_absent=True)
    with pytest.raises(Conflict):
        store.put("x", b"2", if_absent=True)
    with pytest.raises(Conflict):
        store.put("x", b"2", if_match="0" * 32)
    assert store.put("x", b"3", if_match=etag) != etag
    with pytest.raises(Conflict):
        store.get("x", if_match=etag)  # the version it was is gone
    assert store.get("x")[0] == b"3"
    assert store.io.put_requests == 4 and store.io.get_requests == 2


def test_one_holder_at_a_time_and_released_after(store):
    with lease(store, "a/.lease") as held:
        assert held
        with lease(store, "a/.lease", wait=False) as other:
            assert other is False
    assert store.head("a/.lease") is None
    with lease(store, "a/.lease", wait=False) as again:
        assert again


def test_a_lease_of_a_dead_process_on_this_host_is_taken_at_once(store):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    import socket

    body = {"owner": "x", "host": socket.gethostname(), "pid": int(dead.stdout), "expires": time.time() + 3600}
    store.put("b/.lease", json.dumps(body).encode())
    t = time.monotonic()
    with lease(store, "b/.lease", wait=False) as held:
        assert held and time.monotonic() - t < 5


def test_a_live_lease_of_another_host_waits_until_it_expires(store):
    body = {"owner": "y", "host": "elsewhere", "pid": 1, "expires": time.time() + 2}
    store.put("c/.lease", json.dumps(body).encode())
    with lease(store, "c/.lease", wait=False) as held:
        assert held is False
    t = time.monotonic()
    with lease(store, "c/.lease") as held:
        assert held and time.monotonic() - t >= 1.0


def test_a_held_lease_is_renewed_past_its_term(store):
    with lease(store, "d/.lease", term=1.5) as held:
        assert held
        first = json.loads(store.get("d/.lease")[0])["expires"]
        time.sleep(2.5)
        with lease(store, "d/.lease", wait=False) as other:
            assert other is False, "still held after its first term"
        assert json.loads(store.get("d/.lease")[0])["expires"] > first
