"""The branch-switch scenario: build on branch A, on branch B (one asset's code changed), then on A again.

A git repository of a small generated project (`bench/genproject`, raw days from `bench/gen.py`,
versioned with DVC; `data/` is not in git, as in any project): the first build on A starts from
nothing, B's build recomputes the edited asset, and after `git checkout` of A every partition's
current fingerprint is one A computed, so the run restores each kept version instead of
recomputing it. What it measures: the switch back's time and partitions computed and restored,
against the from-scratch build of the same branch.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from bench.report import Cell, Ref, Target
from bench.systems import Measured

#: (days, rows per day) of the generated project: --quick, and the full benchmark
QUICK_SIZE = (20, 20_000)
FULL_SIZE = (60, 100_000)


@dataclass(frozen=True)
class BranchSwitch:
    """The three builds, and what the switch back restored (from the ledger)."""

    scratch: Measured
    on_b: Measured
    back: Measured
    restored: int
    partitions: int

    @property
    def ratio(self) -> float:
        """The switch back's time over the from-scratch build's."""
        return self.back.seconds / self.scratch.seconds if self.scratch.seconds else float("nan")

    def refs(self) -> list[Ref]:
        """The reference table's rows: the from-scratch build, B's build, the switch back."""

        def cell(m: Measured) -> Cell:
            c = Cell()
            c.add(m.seconds, m.computed, m.bytes_read)
            return c

        return [
            Ref(
                "branches",
                f"branch A, from scratch ({self.partitions} daily partitions)",
                cell(self.scratch),
                f"{self.scratch.computed} computed",
            ),
            Ref(
                "branches",
                "branch B (one asset's code changed), after A's build",
                cell(self.on_b),
                f"{self.on_b.computed} computed",
            ),
            Ref(
                "branches",
                "`git checkout` back to A, then the same run (kept versions)",
                cell(self.back),
                f"{self.back.computed} computed, {self.restored} restored; {self.ratio:.3f}× the from-scratch build",
            ),
        ]

    def target(self) -> Target:
        """Switching back recomputes nothing and restores every partition."""
        return Target(
            "branches: switching back to a branch already built recomputes nothing (kept versions)",
            f"0 computed, {self.partitions} restored",
            f"{self.back.computed} computed, {self.restored} restored in {self.back.seconds:.2f} s; from "
            f"scratch: {self.scratch.computed} computed in {self.scratch.seconds:.2f} s "
            f"({self.ratio:.3f}×)",
            self.back.computed == 0 and self.restored == self.partitions,
        )


def branch_switch(base: Path, days: int, rows: int) -> BranchSwitch:
    """Set up the repository under `base` and run the three builds (see the module docstring)."""
    from bench import systems as S
    from bench.workspace import edit_code, setup_gen

    ws = setup_gen(base, days, rows, name="branches")
    sys.path.insert(0, str(ws.root))

    def git(*args: str) -> None:
        ws.run(["git", "-c", "user.name=bench", "-c", "user.email=bench@skipwise.invalid", *args])

    try:
        git("checkout", "-q", "-b", "a")
        git("add", "-A")
        git("commit", "-q", "-m", "branch a")
        scratch = S.skipwise_dagster(ws)
        git("checkout", "-q", "-b", "b")
        edit_code(ws)
        git("commit", "-q", "-a", "-m", "branch b: one asset's code changed")
        on_b = S.skipwise_dagster(ws)
        git("checkout", "-q", "a")
        before = S.ledger_files(ws)
        back = S.skipwise_dagster(ws)
        restored = S.ledger_since(ws, before).restored
    finally:
        sys.path.remove(str(ws.root))  # the generated dataset's project has a package of the same name
    return BranchSwitch(scratch, on_b, back, restored, ws.n_keys)
