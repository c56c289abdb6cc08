"""The `skipwise` console script: a command goes to a running `skipwise serve` when there is one
(`skipwise.cli.server`), else it runs in this process (`skipwise.cli.main`). Nothing heavy is
imported before that choice."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `skipwise` console script."""
    args = sys.argv[1:] if argv is None else list(argv)
    from skipwise.cli.server import hand_over

    rc = hand_over(args)
    if rc is not None:
        return rc
    from skipwise.engine.collector import defer_collection

    # No collection while the command imports what it needs (see `defer_collection`). This process
    # ends with the command: what is frozen then stays frozen, and its exit does not collect it.
    defer_collection()
    from skipwise.cli.main import main as run_here

    return run_here(args)
