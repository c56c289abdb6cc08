"""The partition being computed right now, for library code a body calls (the model registry).

The engine sets it around each call of a body, with the provenance it decided on (code version,
params digest, input versions), so a helper called by the body keys its own caches by exactly
what the partition's fingerprint is made of, never by something it recomputes on its own.
"""

from __future__ import annotations

import contextlib
import contextvars
from dataclasses import dataclass, field
from typing import Any, Iterator

from skipwise.core.plan import Current


@dataclass(frozen=True)
class Computing:
    """The engine's project, the asset and key being computed, and what it is computed from."""

    project: Any
    asset: Any
    key: str
    current: Current
    #: state outside the fingerprint that the output depends on (see `uses_state`)
    outside: list[str] = field(default_factory=list)

    def uses_state(self, what: str) -> None:
        """Say that the output depends on `what`, state the fingerprint does not cover (a model
        registry's promoted version): its kept versions are then never restored by fingerprint,
        since the state may have moved on; the helper keeping that state restores on its own terms."""
        if what not in self.outside:
            self.outside.append(what)

    def code_that_ran(self) -> str:
        """The code version of the code imported so far (an edit since the import is seen)."""
        return self.project.code.that_ran(self.asset, self.current.code_version)


_CURRENT: contextvars.ContextVar[Computing | None] = contextvars.ContextVar("skipwise_computing", default=None)


@contextlib.contextmanager
def computing(project: Any, asset: Any, key: str, current: Current) -> Iterator[Computing]:
    now = Computing(project, asset, key, current)
    token = _CURRENT.set(now)
    try:
        yield now
    finally:
        _CURRENT.reset(token)


def current() -> Computing | None:
    """What the engine is computing in this thread, or None outside a body's call."""
    return _CURRENT.get()
