"""What every `skipwise` subcommand shares: exit codes, the one-line `Error:`, JSON output, a
closed pipe, the project root.

A subcommand is a function of its parsed arguments that returns an exit code (or None for 0) and
raises `SkipwiseError` for anything the user can fix; `run_command` turns that into one `Error:`
line (with the error's `fix:`) and the exit code its kind calls for. Read commands take `--json`
(`add_json_flag`) and print their result with `print_json`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from pathlib import Path
from typing import Any, Callable

from skipwise.core.errors import (
    DEBUG_ENV,
    BudgetExceeded,
    ConfigError,
    PartitionKeyError,
    SkipwiseError,
    UsageError,
    debugging,
)
from skipwise.engine.loading import load_project
from skipwise.project.root import find_root

#: Exit codes of every `skipwise` command.
EXIT_OK = 0
EXIT_FAILURE = 1  # the work failed (a Dagster step, bad input data, an I/O error)
EXIT_USAGE = 2  # a malformed argument or configuration file (argparse's own code for usage errors)
EXIT_CHECK = 3  # a gate said no: over budget, something stale under --check, a failed verify

EXIT_CODES_HELP = """exit codes:
  0  ok
  1  failure (a step failed, bad input data, an I/O error)
  2  usage or configuration error (a malformed argument, params.yaml, skipwise.toml)
  3  a gate said no: over budget (a budget in skipwise.toml, plan --max-usd),
     something stale or missing under status --check, or a committed output that
     skipwise verify could not reproduce (or an asset that disagrees with itself)

environment:
  SKIPWISE_ROOT   the project root (default: the nearest folder up from here holding
                  skipwise.toml, params.yaml, dvc.yaml or a pyproject.toml with [tool.skipwise])
  SKIPWISE_DEBUG  set to 1 to print the traceback of an error
"""


def exit_code_of(exc: SkipwiseError) -> int:
    """The exit code an error calls for: 2 for usage and configuration (a partition key that is
    not one of the asset's included: it comes from --partition), 3 for a budget, else 1."""
    if isinstance(exc, (UsageError, ConfigError, PartitionKeyError)):
        return EXIT_USAGE
    if isinstance(exc, BudgetExceeded):
        return EXIT_CHECK
    return int(getattr(exc, "exit_code", EXIT_FAILURE))


def error(message: str) -> None:
    """Print `Error: <message>` to stderr (the message's own lines, such as `  fix: ...`, follow it)."""
    print(f"Error: {message}", file=sys.stderr)


def run_command(func: Callable[[argparse.Namespace], int | None], args: argparse.Namespace) -> int:
    """Run a subcommand and return its exit code: a `SkipwiseError` is one `Error:` line with its
    fix, anything else one `Error:` line naming its type (SKIPWISE_DEBUG=1 adds the traceback), and
    a reader that closed the pipe (`skipwise cost | head`) ends the command quietly."""
    try:
        code = int(func(args) or EXIT_OK)
        sys.stdout.flush()  # a closed pipe shows up here, not at exit where it could not be caught
        return code
    except BrokenPipeError:
        return _pipe_closed()
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except SkipwiseError as exc:
        _trace()
        error(exc.render())
        return exit_code_of(exc)
    except OSError as exc:
        _trace()
        if exc.errno == 32:  # EPIPE raised as a plain OSError by a library writing to stdout
            return _pipe_closed()
        error(f"{exc}" + ("" if debugging() else f"\n  ({DEBUG_ENV}=1 prints the traceback)"))
        return EXIT_FAILURE
    except Exception as exc:  # noqa: BLE001 - one line for the user, the traceback on request
        _trace()
        error(
            f"{type(exc).__name__}: {exc}"
            + (
                ""
                if debugging()
                else f"\n  this is a bug in skipwise or the project's code; {DEBUG_ENV}=1 prints the traceback"
            )
        )
        return EXIT_FAILURE


def _trace() -> None:
    if debugging():
        traceback.print_exc(file=sys.stderr)


def _pipe_closed() -> int:
    # Point stdout at /dev/null so the interpreter's final flush does not fail a second time.
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass  # stdout is closed already: the final flush has nothing to fail on
    return EXIT_OK


def add_json_flag(parser: argparse.ArgumentParser) -> None:
    """Give a read command its `--json` flag (print the result as one JSON document on stdout)."""
    parser.add_argument("--json", action="store_true", help="machine-readable output (one JSON document on stdout)")


def print_json(value: Any) -> None:
    """Print `value` as indented JSON (dates and paths as strings)."""
    print(json.dumps(value, indent=1, default=str))


def project_root(given: str | None) -> Path:
    """The project root a command works on: --root, else $SKIPWISE_ROOT, else the nearest folder
    upward from the current one that marks a project (so a command works from any subfolder)."""
    if given:
        root = Path(given).resolve()
        if not root.is_dir():
            raise UsageError(f"--root {given} is not a folder", hint="name the project's folder, or leave --root out")
        return root
    return find_root()


MAX_WARNINGS = 10  # a command prints at most this many warnings (--json lists them all)


def print_warnings(warnings: list[str], limit: int = MAX_WARNINGS) -> None:
    """Each warning once, at most `limit` of them, then how many more there are."""
    for w in warnings[:limit]:
        print(f"warning: {w}", file=sys.stderr)
    if len(warnings) > limit:
        print(f"warning: ... {len(warnings) - limit} more (--json lists them all)", file=sys.stderr)


def load(args):
    """The project the command works on, from its --root and --defs."""
    return load_project(project_root(args.root), args.defs)
