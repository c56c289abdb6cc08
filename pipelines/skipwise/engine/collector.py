"""Python's cyclic garbage collector while a command loads: off during the imports and the loading
of definitions (what they make lives as long as the process), then what they made frozen."""

from __future__ import annotations

import gc

_collection = {"deferred": False, "froze": False}


def defer_collection() -> bool:
    """Turn Python's cyclic garbage collector off until `resume_collection()`, for a process about
    to import its libraries and load definitions: what that makes lives as long as the process,
    so the collector's passes over it (a full one traverses every object: about 0.1 s each with
    Dagster imported, several during the imports and the first run) find nothing to free.
    Reference counting frees everything else as usual. Returns whether it was deferred here (not
    when the collector was off already: whoever turned it off keeps that choice)."""
    if _collection["deferred"] or not gc.isenabled():
        return False
    gc.disable()
    _collection.update(deferred=True, froze=False)
    return True


def resume_collection() -> None:
    """This process's long-lived objects exist (libraries imported, definitions loaded): after
    `defer_collection`, freeze them (later collections leave them out) and turn the collector
    back on. Without a deferral, nothing."""
    if _collection["deferred"]:
        # Only a process with nothing frozen before gets it back (`end_deferral`): a fork of
        # `skipwise serve` keeps the server's libraries frozen.
        _collection.update(deferred=False, froze=gc.get_freeze_count() == 0)
        gc.freeze()
        gc.enable()


def end_deferral(deferred: bool) -> None:
    """The end of what `defer_collection` was called for (its return value): the collector is on,
    and what `resume_collection` froze is collectable again (a process that goes on to other
    work, a test calling a command in process, has the collector as it was)."""
    if deferred:
        resume_collection()
        if _collection["froze"]:
            gc.unfreeze()
            _collection["froze"] = False
