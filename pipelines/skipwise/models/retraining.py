"""Did a model's training data change enough to retrain? Answered from manifests and row counts only.

The baseline is what the model's latest version was trained on (recorded in its registry: each
upstream partition's version and row count); the current state is what its training set would be
built from now. New partitions always count as material; otherwise the share of rows in changed
partitions is compared with a threshold. No data is read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from skipwise.core.hashing import digest
from skipwise.models.registry import registry_for, training_parts


@dataclass(frozen=True)
class TrainingChange:
    """How the training data now differs from what the latest model version was trained on."""

    model: str
    baseline: str | None  # the latest version's id, None when no version exists
    total_keys: int
    new_keys: tuple[str, ...]
    changed_keys: tuple[str, ...]
    removed_keys: tuple[str, ...]
    changed_rows: int
    total_rows: int
    state: str  # digest of the current parts: equal states are the same training data

    @property
    def fraction(self) -> float:
        """Share of rows in new or changed partitions (by partitions when row counts are unknown)."""
        if self.total_rows > 0:
            return self.changed_rows / self.total_rows
        n = len(self.new_keys) + len(self.changed_keys) + len(self.removed_keys)
        return n / self.total_keys if self.total_keys else 0.0

    @property
    def any(self) -> bool:
        return self.baseline is None or bool(self.new_keys or self.changed_keys or self.removed_keys)

    def material(self, threshold: float) -> bool:
        """True when retraining is warranted: no version yet, new or removed partitions, or
        more than `threshold` of the rows changed."""
        return self.baseline is None or bool(self.new_keys or self.removed_keys) or self.fraction > threshold

    def describe(self, threshold: float | None = None) -> str:
        """One line a user reads, e.g. "3 of 365 days changed, 0.4 % of rows, below 2 %"."""
        if self.baseline is None:
            return f"{self.model} has no trained version yet"
        parts = [f"{len(self.changed_keys)} of {self.total_keys} partitions changed"]
        if self.new_keys:
            parts.append(f"{len(self.new_keys)} new ({_span(self.new_keys)})")
        if self.removed_keys:
            parts.append(f"{len(self.removed_keys)} removed")
        parts.append(f"{self.fraction * 100:.1f} % of rows")
        line = ", ".join(parts)
        if threshold is not None and not (self.new_keys or self.removed_keys):
            line += f", {'above' if self.fraction > threshold else 'below'} {threshold * 100:g} %"
        return f"{line} since version {self.baseline}"


def _span(keys: tuple[str, ...]) -> str:
    return keys[0] if len(keys) == 1 else f"{keys[0]}..{keys[-1]}"


def training_change(project: Any, model: str) -> TrainingChange:
    """Compare what `model`'s training data is now with what its latest version was trained on."""
    asset = project.graph.asset(model)
    latest = registry_for(project, model).latest()
    now = training_parts(project, asset)
    before = dict(latest.trained_on) if latest is not None else {}
    keys_now = {k for vs in now.values() for k in vs}
    keys_before = {k for vs in before.values() for k in vs}
    changed: set[str] = set()
    changed_rows = total_rows = 0
    rows_known = True
    for dep, versions in now.items():
        for k, (version, rows) in versions.items():
            rows_known = rows_known and rows is not None
            total_rows += rows or 0
            old = before.get(dep, {}).get(k)
            if old is None or old[0] != version:
                if k in keys_before:
                    changed.add(k)
                changed_rows += max(rows or 0, (old[1] if old else 0) or 0)
    return TrainingChange(
        model=model,
        baseline=latest.version if latest is not None else None,
        total_keys=len(keys_now),
        new_keys=tuple(sorted(keys_now - keys_before)) if latest is not None else (),
        changed_keys=tuple(sorted(changed)),
        removed_keys=tuple(sorted(keys_before - keys_now)),
        changed_rows=changed_rows if rows_known else 0,
        total_rows=total_rows if rows_known else 0,
        state=digest({d: {k: v[0] for k, v in vs.items()} for d, vs in now.items()}),
    )
