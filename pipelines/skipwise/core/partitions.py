"""Partition keys, partition sets and the mappings from a partition to the upstream ones it reads."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
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
        raise UsageError(
            f"{option} is empty",
            hint=f"give a partition key or a range first...last, {example}; leave {option} out for every partition",
        )
    first, sep, last = spec.partition(RANGE_SEP)
    if not sep:
        return spec, spec
    if not first or not last:
        side = "start" if not first else "end"
        raise UsageError(f"{option} {show_key(spec)}: the range has no {side}", hint=f"write both ends, {example}")
    return first, last


# Names of layers and assets become path components as they are: a conservative alphabet.
_NAME_RE = _KEY_RE

#: Longest partition key accepted (Dagster's own keys are far shorter).
MAX_KEY_CHARS = 512

# What a key's folder name escapes as ~XX (its UTF-8 bytes): everything but letters, digits and _=.-
_FOLDER_UNSAFE = re.compile(r"[^A-Za-z0-9_=.-]+")
#: Folder names longer than this end in a hash of the key instead of the rest of it.
_FOLDER_MAX = 120


def validate_name(name: object, what: str = "name") -> str:
    """Return `name` (a layer or asset name) if it is a safe path component, else PartitionKeyError."""
    if not isinstance(name, str) or ".." in name or not _NAME_RE.match(name):
        raise PartitionKeyError(
            f"{what} {show_key(name)} is not allowed: 1-128 characters of letters, digits and '_', '.', '=', '-', "
            "starting with a letter or digit, never '..'",
            hint="rename it",
        )
    return name


def validate_key(key: object) -> str:
    """Return `key` if it is an acceptable partition key, else raise PartitionKeyError saying why.

    Any key Dagster makes is accepted (hourly ``2025-01-01-00:00``, multi-partition
    ``2025-01-01|north``, static names with spaces); a key is refused when it is empty, longer than
    512 characters, holds a control character or a path separator, or contains ``..``. Keys never
    become paths as they are: `key_folder` escapes them.
    """
    if not isinstance(key, str) or key == "":
        raise PartitionKeyError(
            f"partition key {show_key(key)} is empty or not a string",
            hint="pass a key such as 2013-03-14",
        )
    if key in _VALID:
        return key
    bad = ""
    if len(key) > MAX_KEY_CHARS:
        bad = f"longer than {MAX_KEY_CHARS} characters"
    elif ".." in key:
        bad = "contains '..'"
    elif "/" in key or "\\" in key:
        bad = "contains a path separator"
    elif _CONTROL.search(key):
        bad = "contains a control character"
    if bad:
        raise PartitionKeyError(
            f"partition key {show_key(key)} is not allowed: it {bad}",
            hint="use the asset's own keys, e.g. 2013-03-14",
        )
    if len(_VALID) < 200_000:  # planning validates the same keys many times
        _VALID.add(key)
    return key


_VALID: set[str] = set()
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_FOLDERS: dict[str, str] = {}


def _escaped(unsafe: re.Match[str]) -> str:
    return "".join(f"~{b:02x}" for b in unsafe.group().encode("utf-8"))


def key_folder(key: str) -> str:
    """The folder name of partition `key`: the key itself when it is plain, else escaped.

    Characters outside letters, digits and ``_=-.`` (and a leading dot) become ``~XX`` per UTF-8
    byte, so the mapping is one to one (``~`` itself is escaped); a name over 120 characters ends in
    ``~h`` and a hash of the whole key instead. The key is validated first.
    """
    cached = _FOLDERS.get(key)
    if cached is not None:
        return cached
    validate_key(key)
    folder = _FOLDER_UNSAFE.sub(_escaped, key)
    if folder[0] == ".":
        folder = "~2e" + folder[1:]
    if len(folder) > _FOLDER_MAX:
        import hashlib

        folder = f"{folder[:80]}~h{hashlib.sha256(key.encode('utf-8')).hexdigest()[:32]}"
    if len(_FOLDERS) < 200_000:
        _FOLDERS[key] = folder
    return folder


def folder_key(folder: str) -> str | None:
    """The key whose `key_folder` is `folder`, or None for a hashed (long) one: read its manifest."""
    if "~h" in folder:
        return None
    if "~" not in folder:
        return folder
    data = bytearray()
    i = 0
    while i < len(folder):
        if folder[i] == "~":
            try:
                data.append(int(folder[i + 1 : i + 3], 16))
            except ValueError:
                return None
            i += 3
        else:
            data.extend(folder[i].encode())
            i += 1
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


@dataclass(frozen=True)
class Dim:
    """One dimension of a partitioning, as a source's path template sees it: its name ("" for a
    single partitioning; a multi-partitioning's dimension name) and, for a time window, the format
    its keys are written in (``%Y-%m-%d-%H:%M`` for hourly; "" for static or dynamic keys)."""

    name: str
    fmt: str = ""


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

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, str):
            return False
        try:
            return self.parse(key).isoformat() == key
        except PartitionKeyError:
            return False

    def key_range(self, first: str, last: str) -> list[str]:
        """Keys from `first` to `last`, both inclusive."""
        a, b = self.parse(first), self.parse(last)
        if b < a:
            raise PartitionKeyError(
                f"partition range {first}{RANGE_SEP}{last} is empty", hint="put the earlier day first"
            )
        return [(a + timedelta(days=i)).isoformat() for i in range((b - a).days + 1)]


@dataclass(frozen=True)
class KeySet:
    """Any ordered set of partition keys: Dagster's keys of a partitions definition (hourly, weekly,
    static, multi...), as the Dagster adapter resolved them. `kind` says which, for messages."""

    key_list: tuple[str, ...]
    kind: str = "static"
    #: the dimensions of its keys (empty: one dimension of plain keys), for source path templates
    dims: tuple[Dim, ...] = ()
    _index: dict[str, int] = field(default_factory=dict, compare=False, repr=False, hash=False)

    def __post_init__(self) -> None:
        self._index.update({k: i for i, k in enumerate(self.key_list)})

    def keys(self) -> list[str]:
        """Every key, in the partitioning's order."""
        return list(self.key_list)

    def __contains__(self, key: object) -> bool:
        return key in self._index

    def index(self, key: str) -> int:
        """The position of `key`; PartitionKeyError if it is not one of the keys."""
        i = self._index.get(key)
        if i is None:
            validate_key(key)
            near = difflib.get_close_matches(key, self.key_list[:5000], n=1, cutoff=0.6) if isinstance(key, str) else []
            example = near[0] if near else (self.key_list[0] if self.key_list else "")
            raise PartitionKeyError(
                f"partition key {show_key(key)} is not a key of this {self.kind} partitioning "
                f"({len(self.key_list)} keys: {show_key(self.key_list[0]) if self.key_list else 'none'}...)",
                hint=f"use one of its keys, e.g. {example}" + (" (did you mean it?)" if near else ""),
            )
        return i

    def parse(self, key: str) -> str:
        """`key` if it is one of the keys, else PartitionKeyError."""
        self.index(key)
        return key

    def key_range(self, first: str, last: str) -> list[str]:
        """Keys from `first` to `last`, both inclusive, in the partitioning's order."""
        a, b = self.index(first), self.index(last)
        if b < a:
            raise PartitionKeyError(
                f"partition range {first}{RANGE_SEP}{last} is empty", hint="put the earlier key first"
            )
        return list(self.key_list[a : b + 1])


Partitions = Union[DailyPartitions, KeySet, None]


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


@dataclass(frozen=True)
class Offsets:
    """Partition at position i reads the upstream's partitions i+start .. i+end (same key list),
    clipped to its range: Dagster's TimeWindowPartitionMapping between equal partitionings."""

    start: int
    end: int = 0


@dataclass(frozen=True)
class Table:
    """Partition k reads exactly the upstream keys listed for k (any other Dagster mapping, resolved
    by the adapter into plain key lists)."""

    rows: tuple[tuple[str, tuple[str, ...]], ...]
    _lookup: dict[str, tuple[str, ...]] = field(default_factory=dict, compare=False, repr=False, hash=False)

    def __post_init__(self) -> None:
        self._lookup.update(dict(self.rows))

    def upstream(self, key: str) -> list[str]:
        return list(self._lookup.get(key, ()))


Mapping = Union[Identity, Window, AllOf, Offsets, Table]


def dims_of(partitions: Partitions) -> tuple[Dim, ...] | None:
    """The dimensions of a partition set's keys (None: unpartitioned)."""
    if partitions is None:
        return None
    if isinstance(partitions, DailyPartitions):
        return (Dim("", "%Y-%m-%d"),)
    return partitions.dims or (Dim(""),)


def keys_of(partitions: Partitions) -> list[str]:
    """Every key of a partition set; an unpartitioned asset has the single key UNPARTITIONED."""
    return [UNPARTITIONED] if partitions is None else partitions.keys()


def upstream_keys(mapping: Mapping, key: str, upstream: Partitions) -> list[str] | None:
    """The upstream keys partition `key` reads, in order; None means 'all of them'."""
    if upstream is None:
        return [UNPARTITIONED]
    if isinstance(mapping, AllOf):
        return None
    if isinstance(mapping, Identity):
        upstream.parse(key)  # raises if the upstream has no such partition
        return [key]
    if isinstance(mapping, Table):
        return mapping.upstream(key)
    if isinstance(mapping, Offsets):
        assert isinstance(upstream, KeySet)
        i, n = upstream.index(key), len(upstream.key_list)
        return list(upstream.key_list[max(0, i + mapping.start) : max(0, min(n, i + mapping.end + 1))])
    assert isinstance(upstream, DailyPartitions)  # a Window's lookback counts days
    day = date.fromisoformat(key)
    first = max(upstream.start, day - timedelta(days=mapping.lookback))
    return [(first + timedelta(days=i)).isoformat() for i in range((day - first).days + 1)]


def keys_in_range(partitions: "Partitions", spec: str | None) -> list[str] | None:
    """The keys of `partitions` that `--partition spec` (one key or first...last; None: all)
    selects; None for an unpartitioned asset; [] when the partitioning holds neither end (an
    hourly asset under a daily key: its assets are not selected by that range)."""
    if partitions is None:
        return None
    if spec is None:
        return partitions.keys()
    first, last = parse_range(spec)
    try:
        partitions.parse(first), partitions.parse(last)
    except PartitionKeyError:
        return []
    return partitions.key_range(first, last)
