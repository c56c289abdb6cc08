"""What happened to one partition in a materialization: skipped, restored or computed."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from skipwise.core.cost import CostVector
from skipwise.core.manifest import Manifest
from skipwise.core.plan import RESTORE, RUN, Decision


@dataclass(frozen=True)
class Outcome:
    """What happened to one partition: skipped, or computed with its manifest and cost."""

    decision: Decision
    manifest: Manifest | None = None
    cost: CostVector | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)

    @property
    def computed(self) -> bool:
        return self.decision.action == RUN

    @property
    def restored(self) -> bool:
        """A kept version made current again: the contents changed, nothing was computed."""
        return self.decision.action == RESTORE

    @property
    def cache(self) -> str:
        """The ledger's and the event's verdict: miss (computed), restore or hit."""
        return "miss" if self.computed else "restore" if self.restored else "hit"
