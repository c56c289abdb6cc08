"""Partition keys, partition sets and the mappings from a partition to the upstream ones it reads."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Union

from skipwise.core.errors import PartitionKeyError, UsageError

# Keys become path components: allow a conservative alphabet, never a separator or a dot-dot.
_KEY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.=-]{0,127}$")

#: The key under which an unpartitioned asset stores its single partition.
UNPARTITIONED = "all"

#: How a range of keys is written on the command line and in run tags: first...last.
RANGE_SEP = "..."

#: Keys echoed in messages are cut to this many characters.
SHOWN_KEY_CHARS = 40


def show_key(key: object) -> str:
    """`key` as messages echo it: its repr, cut to ~40 characters with the full length said."""
    if isinstance(key, str) and len(key) > SHOWN_KEY_CHARS:
        return f"{key[:SHOWN_KEY_CHARS]!r}... ({len(key)} characters)"
    text = repr(key)
    return text if len(text) <= SHOWN_KEY_CHARS + 2 else f"{text[:SHOWN_KEY_CHARS]}... ({len(text)} characters)"


def parse_range(spec: str, option: str = "--partition") -> tuple[str, str]:
    """`first...last` (or one key) -> (first, last); UsageError when it or either half is empty."""
    example = f"e.g. {option} 2013-03-14 or {option} 2013-03-01...2013-03-14"
    if not isinstance(spec, str) or not spec.strip():
        raise UsageError(f"{option} is empty", hint=f"give a partition key or a range first...last, {example}; "
                         f"leave {option} out for every partition")
    first, sep, last = spec.partition(RANGE_SEP)
    if not sep:
        return spec, spec
    if not first or not last:
        side = "start" if not first else "end"
        raise UsageError(f"{option} {show_key(spec)}: the range has no {side}",
                         hint=f"write both ends, {example}")
    return first, last


def validate_key(key: object) -> str:
    """Return `key` if it is a safe partition key, else raise PartitionKeyError saying why."""
    if not isinstance(key, str) or key == "":
        raise PartitionKeyError(
            f"partition key {show_key(key)} is empty or not a string",
            hint="pass a key such as 2013-03-14",
        )
    if ".." in key or not _KEY_RE.match(key):
        raise PartitionKeyError(
            f"partition key {show_key(key)} is not allowed: keys are 1-128 characters of letters, digits and "
            "'_', '.', '=', '-', start with a letter or digit and never contain '..' or a path separator",
            hint="use the asset's own keys, e.g. 2013-03-14",
        )
    return key


@dataclass(frozen=True)
class DailyPartitions:
    """Daily partitions from `start` (inclusive) to `end` (exclusive), keyed by ISO date."""

    start: date
    end: date

    def keys(self) -> list[str]:
        """Every key, in time order."""
        n = (self.end - self.start).days
        return [(self.start + timedelta(days=i)).isoformat() for i in range(n)]

    def parse(self, key: str) -> date:
        """The date of `key`; PartitionKeyError if it is malformed or out of range."""
        validate_key(key)
        try:
            day = date.fromisoformat(key)
        except ValueError:
            raise PartitionKeyError(
                f"partition key {show_key(key)} is not a date (YYYY-MM-DD)", hint="use a key such as 2013-03-14"
            ) from None
        if not (self.start <= day < self.end):
            raise PartitionKeyError(
                f"partition key {show_key(key)} is outside {self.start.isoformat()}..{self.end.isoformat()}",
                hint=f"use a day from {self.start.isoformat()} to {(self.end - timedelta(days=1)).isoformat()}",
            )
        return day

    def key_range(self, first: str, last: str) -> list[str]:
        """Keys from `first` to `last`, both inclusive."""
        a, b = self.parse(first), self.parse(last)
        if b < a:
            raise PartitionKeyError(f"partition range {first}{RANGE_SEP}{last} is empty", hint="put the earlier day first")
        return [(a + timedelta(days=i)).isoformat() for i in range((b - a).days + 1)]


Partitions = Union[DailyPartitions, None]


@dataclass(frozen=True)
class Identity:
    """Partition k reads upstream partition k."""


@dataclass(frozen=True)
class Window:
    """Partition k reads upstream partitions k - lookback .. k (days), clipped to the upstream range."""

    lookback: int


@dataclass(frozen=True)
class AllOf:
    """The partition reads every (materialized) upstream partition."""


Mapping = Union[Identity, Window, AllOf]


def keys_of(partitions: Partitions) -> list[str]:
    """Every key of a partition set; an unpartitioned asset has the single key UNPARTITIONED."""
    return [UNPARTITIONED] if partitions is None else partitions.keys()


def upstream_keys(mapping: Mapping, key: str, upstream: Partitions) -> list[str] | None:
    """The upstream keys partition `key` reads, in order; None means 'all of them'."""
    if upstream is None:
        return [UNPARTITIONED]
    if isinstance(mapping, AllOf):
        return None
    day = date.fromisoformat(key)
    if isinstance(mapping, Identity):
        upstream.parse(key)  # raises if the upstream has no such partition
        return [key]
    first = max(upstream.start, day - timedelta(days=mapping.lookback))
    return [(first + timedelta(days=i)).isoformat() for i in range((day - first).days + 1)]
