"""The errors skipwise raises. Each one says what is wrong, where, and what to do."""

from __future__ import annotations

import importlib
import os
from typing import Any

#: set to 1 to see the traceback of an error (the `skipwise` command's and a Dagster step's)
DEBUG_ENV = "SKIPWISE_DEBUG"


def debugging() -> bool:
    """Whether $SKIPWISE_DEBUG asks for tracebacks."""
    return os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no")


class SkipwiseError(Exception):
    """Base of every error skipwise raises on purpose."""

    def __init__(self, message: str, *, hint: str = "", location: str = "") -> None:
        self.message = message
        self.hint = hint
        self.location = location
        super().__init__(self.render())

    def render(self) -> str:
        where = f"{self.location}: " if self.location else ""
        fix = f"\n  fix: {self.hint}" if self.hint else ""
        return f"{where}{self.message}{fix}"


class ConfigError(SkipwiseError):
    """A configuration file (params.yaml, skipwise.toml, ...) is malformed or names something unknown."""


class PartitionKeyError(SkipwiseError):
    """A partition key is empty, hostile (path-like) or outside the asset's partitions."""


class InputError(SkipwiseError):
    """An input partition is missing, corrupt, or not what DVC recorded."""


class BudgetExceeded(SkipwiseError):
    """A run's projected cost is over a budget; nothing was computed."""


class UsageError(SkipwiseError):
    """A command-line argument is malformed (an empty --partition, say); the CLI exits 2, like argparse."""

    exit_code = 2


class MissingDependency(SkipwiseError, ImportError):
    """An optional package is not installed: what needs it, and which of skipwise's extras installs it."""


def require(module: str, extra: str, needed_for: str, *, also: str = "") -> Any:
    """Import the optional `module`, or raise MissingDependency naming `extra`, the extra of
    skipwise that installs it (`also`: what else to install beside it)."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.partition(".")[0]
        raise MissingDependency(
            f"{needed_for} needs {top}, which is not installed ({type(exc).__name__}: {exc})",
            hint=f"pip install 'skipwise[{extra}]'" + (f" {also}" if also else ""),
        ) from exc


class RunFailed(SkipwiseError):
    """A materialization failed: a step raised, or the run could not start."""
