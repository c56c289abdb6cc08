"""The collector while a command loads (`skipwise.engine.collector`): off during the imports, the
loaded objects frozen and the collector back on once they exist, and a process that goes on (a
test calling a command in process) left as it was; a choice made by someone else is kept."""

from __future__ import annotations

import gc
import subprocess
import sys

import pytest
from skipwise.engine import collector
from skipwise.engine.collector import defer_collection, end_deferral, resume_collection


@pytest.fixture(autouse=True)
def collector_restored():
    enabled, frozen = gc.isenabled(), gc.get_freeze_count()
    yield
    collector._collection.update(deferred=False, froze=False)
    if gc.get_freeze_count() and not frozen:
        gc.unfreeze()
    (gc.enable if enabled else gc.disable)()


def test_deferred_until_loaded_then_frozen_and_back_as_it_was():
    gc.enable()
    assert gc.get_freeze_count() == 0
    assert defer_collection() is True
    assert not gc.isenabled()
    assert defer_collection() is False  # nested (the console script, then the command): one deferral
    loaded = [object() for _ in range(10)]
    resume_collection()
    assert gc.isenabled() and gc.get_freeze_count() > 0  # the loaded objects: left out of collections
    resume_collection()  # again (a second definitions load): nothing more
    end_deferral(True)
    assert gc.isenabled() and gc.get_freeze_count() == 0
    del loaded


def test_a_collector_turned_off_by_someone_else_stays_off():
    gc.disable()
    assert defer_collection() is False
    resume_collection()
    end_deferral(False)
    assert not gc.isenabled() and gc.get_freeze_count() == 0


def test_what_was_frozen_before_stays_frozen():
    # A fork of `skipwise serve`: the server froze its libraries before the command's deferral.
    gc.enable()
    gc.freeze()
    before = gc.get_freeze_count()
    deferred = defer_collection()
    resume_collection()
    end_deferral(deferred)
    assert gc.isenabled() and gc.get_freeze_count() >= before


def test_a_command_imports_dagster_with_no_collection_and_ends_with_the_collector_on():
    script = """
import gc, sys
runs = []
gc.callbacks.append(lambda phase, info: runs.append(info["generation"]) if phase == "start" else None)
from skipwise.engine.collector import defer_collection, resume_collection
defer_collection()
runs.clear()  # those while importing the collector module itself
import dagster, polars, skipwise.adapters.dagster.run
during = len(runs)
resume_collection()
print(during, gc.isenabled(), gc.get_freeze_count() > 0)
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["0", "True", "True"]
