"""Progress bars for long commands, drawn by tqdm, only when a person is watching.

A command opens one bar for its whole work (`bar`); code deeper down, such as the Dagster step
that loops over partitions in the same process, moves it with `advance` without knowing whether
one is open. Nothing is drawn unless stdout and stderr are terminals, so logs, pipes and tests see
no bar (set SKIPWISE_PROGRESS=0 to turn it off on a terminal, 1 to force it).
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from typing import Any, Iterator

PROGRESS_ENV = "SKIPWISE_PROGRESS"

_current: Any = None


def wanted() -> bool:
    """Whether to draw: $SKIPWISE_PROGRESS if set, else whether stdout and stderr are terminals."""
    env = os.environ.get(PROGRESS_ENV, "").strip().lower()
    if env:
        return env not in ("0", "false", "no", "off")
    try:
        return sys.stdout.isatty() and sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def start(total: int, desc: str, unit: str = "partition") -> None:
    """Open the process's bar over `total` steps (on stderr) when `wanted()` and none is open."""
    global _current
    if not wanted() or total <= 0 or _current is not None:
        return
    from tqdm import tqdm

    # Without tqdm's monitor thread: a process with a thread cannot fork its workers.
    bar_class = type("Bar", (tqdm,), {"monitor_interval": 0})
    _current = bar_class(total=total, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True, leave=True)


def finish() -> None:
    """Close the open bar, if any."""
    global _current
    if _current is not None:
        _current.close()
        _current = None


@contextmanager
def bar(total: int, desc: str, unit: str = "partition") -> Iterator[None]:
    """A bar over `total` steps for the duration of the block (see `start`); the block's
    `advance` calls move it."""
    opened = _current is None
    start(total, desc, unit)
    try:
        yield
    finally:
        if opened:
            finish()


def advance(n: int = 1, label: str | None = None) -> None:
    """Move the open bar by `n` (and show `label`, e.g. the asset being computed); no-op without one."""
    if _current is None:
        return
    if label is not None:
        _current.set_postfix_str(label, refresh=False)
    _current.update(n)


def reach(done: int) -> None:
    """Move the open bar to at least `done` (work finished in other processes, counted afterwards)."""
    if _current is not None and done > _current.n:
        _current.update(done - _current.n)


def _forget_in_child() -> None:
    """A forked child (a worker of `skipwise materialize`) leaves the bar to its parent, which
    counts the child's partitions when it ends."""
    global _current
    _current = None


os.register_at_fork(after_in_child=_forget_in_child)


def iterate(items: Any, desc: str, unit: str = "file", total: int | None = None) -> Iterator[Any]:
    """`items`, with a bar moving one step per item when `wanted()`."""
    items = list(items) if total is None else items
    with bar(total if total is not None else len(items), desc, unit):
        for item in items:
            yield item
            advance()
