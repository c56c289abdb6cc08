"""The partition being computed right now, for library code a body calls (the model registry).

The engine sets it around each call of a body, with the provenance it decided on (code version,
params digest, input versions), so a helper called by the body keys its own caches by exactly
what the partition's fingerprint is made of, never by something it recomputes on its own.
"""

from __future__ import annotations

import contextlib
import contextvars
from dataclasses import dataclass
from typing import Any, Iterator

from skipwise.core.plan import Current


@dataclass(frozen=True)
class Computing:
    """The engine's project, the asset and key being computed, and what it is computed from."""

    project: Any
    asset: Any
    key: str
    current: Current

    def code_that_ran(self) -> str:
        """The code version of the code imported so far (an edit since the import is seen)."""
        return self.project.code_that_ran(self.asset, self.current.code_version)


_CURRENT: contextvars.ContextVar[Computing | None] = contextvars.ContextVar("skipwise_computing", default=None)


@contextlib.contextmanager
def computing(project: Any, asset: Any, key: str, current: Current) -> Iterator[None]:
    token = _CURRENT.set(Computing(project, asset, key, current))
    try:
        yield
    finally:
        _CURRENT.reset(token)


def current() -> Computing | None:
    """What the engine is computing in this thread, or None outside a body's call."""
    return _CURRENT.get()
