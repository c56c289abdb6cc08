"""Where a source's partition lives: a path template rendered with the partition's fields.

A template is a path (or URL) with fields in braces, as ``str.format`` writes them:

- ``{partition_key}`` (or ``{key}``): the key exactly as Dagster spells it, never escaped;
- the dimensions of a multi-partitioning by name (``{region}``), a time dimension formatted by a
  strftime spec (``{date:%Y/%m/%d}``);
- for a time-window partitioning (or the one time dimension of a multi-partitioning), the window's
  start as ``{date}``, ``{year}``, ``{month}``, ``{day}``, ``{hour}``, ``{minute}`` (or any of them
  with a spec: ``{hour:%H}``); the key is parsed with the partitioning's own format;
- glob characters in the literal text (``*``, ``?``, ``[...]``; ``**`` across folders) make it
  match several files per partition (``dt={date:%Y-%m-%d}/*.parquet``).

Pure: the partitioning comes in as `Dim`s (`skipwise.core.partitions.dims_of`).
"""

from __future__ import annotations

import functools
import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Sequence

from skipwise.core.errors import ConfigError
from skipwise.core.partitions import Dim, validate_key

KEY_FIELDS = ("partition_key", "key")
#: names that stand for a time window's start, with the format each has without a spec
TIME_FIELDS = {"date": "%Y-%m-%d", "year": "%Y", "month": "%m", "day": "%d", "hour": "%H", "minute": "%M"}
GLOB_CHARS = "*?["
MULTI_SEP = "|"  # how Dagster joins a multi-partition key's dimensions (in the order of their names)


@dataclass(frozen=True)
class Field:
    name: str
    spec: str = ""


Part = str | Field


def parse(text: str, where: str = "template") -> tuple[Part, ...]:
    """The template's literal parts and fields, in order; ConfigError for a brace left open."""
    parts: list[Part] = []
    buf: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c in "{}" and text[i + 1 : i + 2] == c:  # {{ and }} are literal braces
            buf.append(c)
            i += 2
            continue
        if c == "}":
            raise ConfigError(
                f"{where}: {text!r} has a '}}' that closes nothing", hint="write '}}' for a literal brace"
            )
        if c == "{":
            end = text.find("}", i)
            if end < 0:
                raise ConfigError(f"{where}: {text!r} has a '{{' that is never closed", hint="close the field: {date}")
            name, _, spec = text[i + 1 : end].partition(":")
            if not name.isidentifier():
                raise ConfigError(
                    f"{where}: {text!r} has a field {{{text[i + 1 : end]}}} that is not a name",
                    hint="fields are names such as {partition_key}, {date:%Y/%m/%d} or {region}",
                )
            if buf:
                parts.append("".join(buf))
                buf = []
            parts.append(Field(name, spec))
            i = end + 1
            continue
        buf.append(c)
        i += 1
    if buf:
        parts.append("".join(buf))
    return tuple(parts)


def _time_dim(dims: Sequence[Dim]) -> Dim | None:
    timed = [d for d in dims if d.fmt]
    return timed[0] if len(timed) == 1 else None


def known_fields(dims: Sequence[Dim] | None) -> list[str]:
    """The field names a template may use over this partitioning (none when unpartitioned)."""
    if dims is None:
        return []
    names = list(KEY_FIELDS[:1])
    names += [d.name for d in dims if d.name]
    if _time_dim(dims) is not None:
        names += [t for t in TIME_FIELDS if t not in names]
    return names


@dataclass(frozen=True)
class Template:
    """A parsed path template (see the module's docstring)."""

    text: str
    parts: tuple[Part, ...]

    @classmethod
    def of(cls, text: str, where: str = "template") -> Template:
        return cls(text, parse(text, where))

    @property
    def fields(self) -> list[Field]:
        return [p for p in self.parts if isinstance(p, Field)]

    @property
    def is_glob(self) -> bool:
        """Whether one partition may be several files (glob characters outside the fields)."""
        return any(isinstance(p, str) and any(c in p for c in GLOB_CHARS) for p in self.parts)

    @property
    def prefix(self) -> str:
        """The literal text before the first field or glob character."""
        out = []
        for p in self.parts:
            if isinstance(p, Field):
                break
            cut = min((p.index(c) for c in GLOB_CHARS if c in p), default=-1)
            if cut >= 0:
                out.append(p[:cut])
                break
            out.append(p)
        return "".join(out)

    def check(self, dims: Sequence[Dim] | None, where: str) -> None:
        """ConfigError naming the field when the template uses one the partitioning has not (or a
        time spec on a dimension that is not a time window), or a partitioned source's template
        names no field (every partition would read the same file)."""
        known = known_fields(dims)
        for f in self.fields:
            if f.name not in known:
                what = "an unpartitioned source has no fields" if dims is None else f"known: {', '.join(known)}"
                raise ConfigError(
                    f"{where}: {self.text!r} uses {{{f.name}}}, which this partitioning has not ({what})",
                    hint="use the partitioning's fields, e.g. {partition_key}" if dims is not None else "remove it",
                )
            if f.spec and (f.name in KEY_FIELDS or not self._time_of(f, dims)):
                raise ConfigError(
                    f"{where}: {self.text!r} gives {{{f.name}}} a format ({f.spec!r}), but it is not a time window",
                    hint=f"write {{{f.name}}}; formats such as {{date:%Y/%m/%d}} apply to time-window partitions",
                )
        if dims is not None and not self.fields:
            raise ConfigError(
                f"{where}: {self.text!r} names no field of the partition, so every partition would read the same file",
                hint="put the key in it, e.g. {partition_key} or {date:%Y/%m/%d}",
            )

    @staticmethod
    def _time_of(f: Field, dims: Sequence[Dim] | None) -> Dim | None:
        """The time dimension field `f` formats (None: `f` is not a time value)."""
        if not dims:
            return None
        for d in dims:
            if d.name and d.name == f.name:
                return d if d.fmt else None
        return _time_dim(dims) if f.name in TIME_FIELDS else None

    def values(self, key: str, dims: Sequence[Dim] | None) -> list[str]:
        """Each field's text for partition `key`, in the template's order."""
        subs = _split(key, dims)
        out = []
        for f in self.fields:
            if f.name in KEY_FIELDS:
                out.append(validate_key(key))  # never a separator or '..': it stays in its folder
                continue
            dim = self._time_of(f, dims)
            if dim is not None:
                # a dimension named as a field gives its own key unless a spec formats it
                spec = f.spec if f.spec or f.name == dim.name else TIME_FIELDS[f.name]
                text = subs[dim.name]
                out.append(_parsed(text, dim.fmt).strftime(spec) if spec else text)
            else:
                out.append(subs[f.name])
        return out

    def render(self, key: str, dims: Sequence[Dim] | None) -> str:
        """The path of partition `key` (glob characters of the template kept)."""
        values = iter(self.values(key, dims))
        return "".join(next(values) if isinstance(p, Field) else p for p in self.parts)

    def pattern(self, key: str, dims: Sequence[Dim] | None) -> re.Pattern[str]:
        """A regular expression matching the paths of partition `key` (the fields' text literal, the
        template's glob characters as globs)."""
        values = iter(self.values(key, dims))
        return re.compile("".join(re.escape(next(values)) if isinstance(p, Field) else _glob(p) for p in self.parts))

    def match(self, path: str, dims: Sequence[Dim] | None) -> str | None:
        """The partition key whose path `path` is, or None (no match, or the template does not
        say the whole key: a daily key from ``{year}/{month}`` alone). Fields next to each other
        with nothing but a dash between them may split a path in several ways: the first split is
        taken, and None answered when it does not render back to `path`."""
        groups: list[str] = []
        rx = []
        for p in self.parts:
            if isinstance(p, str):
                rx.append(_glob(p))
                continue
            groups.append(p.name)
            rx.append(f"(?P<g{len(groups) - 1}>{_field_regex(p, self._time_of(p, dims))})")
        m = re.fullmatch("".join(rx), path)
        if m is None:
            return None
        found = [(f, m.group(f"g{i}")) for i, f in enumerate(self.fields)]
        keys = {text for f, text in found if f.name in KEY_FIELDS}
        if len(keys) > 1:
            return None
        key = keys.pop() if keys else self._key_from(found, dims)
        if key is None or dims is None:
            return key
        try:
            return key if self.render(key, dims) == path or self.is_glob else None
        except (KeyError, ValueError):
            return None

    def _key_from(self, found: list[tuple[Field, str]], dims: Sequence[Dim] | None) -> str | None:
        if not dims:
            return None
        subs: dict[str, str] = {}
        for d in dims:
            plain = {t for f, t in found if f.name == d.name and not f.spec}
            if d.fmt and not plain:
                when = _when([(f, t) for f, t in found if self._time_of(f, dims) == d])
                if when is None:
                    return None
                subs[d.name] = when.strftime(d.fmt)
            elif len(plain) == 1:
                subs[d.name] = plain.pop()
            else:
                return None
        return MULTI_SEP.join(subs[d.name] for d in sorted(dims, key=lambda d: d.name))


@functools.lru_cache(maxsize=65536)
def _parsed(text: str, fmt: str) -> datetime:
    """A time-window key parsed with its partitioning's format (once: a template names several parts of it)."""
    return datetime.strptime(text, fmt)


def _split(key: str, dims: Sequence[Dim] | None) -> dict[str, str]:
    """Dimension name -> its part of `key` ("" names the whole key of a single partitioning)."""
    if not dims:
        return {}
    if len(dims) == 1:
        return {dims[0].name: key}
    names = sorted(d.name for d in dims)
    pieces = key.split(MULTI_SEP)
    if len(pieces) != len(names):
        raise ValueError(f"partition key {key!r} does not have {len(names)} dimensions ({', '.join(names)})")
    return dict(zip(names, pieces))


_DIRECTIVES = {"Y": r"\d{4}", "m": r"\d{2}", "d": r"\d{2}", "H": r"\d{2}", "M": r"\d{2}", "S": r"\d{2}", "j": r"\d{3}"}
#: strftime directives a matched path gives back, and the datetime field each sets
_PARTS = {"Y": "year", "m": "month", "d": "day", "H": "hour", "M": "minute", "S": "second", "j": "yday"}


def _field_regex(f: Field, dim: Dim | None) -> str:
    if dim is None or f.name in KEY_FIELDS:
        return "[^/]+?"  # a key (and so each of its dimensions) never holds a separator
    spec = f.spec or (TIME_FIELDS.get(f.name, "") if f.name != dim.name else dim.fmt)
    out, i = [], 0
    while i < len(spec):
        if spec[i] == "%" and i + 1 < len(spec):
            out.append(_DIRECTIVES.get(spec[i + 1], ".+?"))
            i += 2
        else:
            out.append(re.escape(spec[i]))
            i += 1
    return "".join(out)


def _when(found: list[tuple[Field, str]]) -> datetime | None:
    """One datetime from several formatted pieces of it (``%Y/%m/%d`` and ``%H``), or None when
    they disagree or leave the day unknown."""
    values: dict[str, int] = {}
    for f, text in found:
        spec = f.spec or TIME_FIELDS.get(f.name, "")
        if not spec:
            continue
        try:
            parsed = datetime.strptime(text, spec)
        except ValueError:
            return None
        for d in re.findall(r"%(.)", spec):
            attr = _PARTS.get(d)
            if attr is None:
                continue
            v = parsed.timetuple().tm_yday if attr == "yday" else getattr(parsed, attr)
            if values.setdefault(attr, v) != v:
                return None
    if not {"year", "month", "day"} <= values.keys():
        return None
    return datetime(
        values["year"],
        values["month"],
        values["day"],
        values.get("hour", 0),
        values.get("minute", 0),
        values.get("second", 0),
    )


def _glob(text: str) -> str:
    """A literal piece of a template as a regular expression: ``**/`` any folders, ``*`` and ``?``
    within one folder, ``[...]`` a character class, the rest literal."""
    out, i = [], 0
    while i < len(text):
        c = text[i]
        if text.startswith("**/", i):
            out.append("(?:[^/]+/)*")
            i += 3
        elif text.startswith("**", i):
            out.append(".*")
            i += 2
        elif c == "*":
            out.append("[^/]*")
            i += 1
        elif c == "?":
            out.append("[^/]")
            i += 1
        elif c == "[" and "]" in text[i + 2 :]:
            end = text.index("]", i + 2)
            body = text[i + 1 : end]
            out.append("[" + ("^" + body[1:] if body.startswith("!") else body).replace("\\", "\\\\") + "]")
            i = end + 1
        else:
            out.append(re.escape(c))
            i += 1
    return "".join(out)


def static_dir(path: str) -> str:
    """The folders of `path` before any field or glob character: where its files are listed from."""
    cut = min([path.index(c) for c in "{" + GLOB_CHARS if c in path] or [len(path)])
    head = path[:cut]
    return head if cut == len(path) else head.rsplit("/", 1)[0] if "/" in head else ""


def combined_version(parts: Sequence[tuple[str, str]], prefix: str) -> str:
    """One version for a partition made of several files: `prefix` and a hash of each file's
    (path, version), sorted by path, so the order files are listed in never counts."""
    h = hashlib.sha256()
    for rel, version in sorted(parts):
        h.update(f"{rel}\0{version}\n".encode())
    return f"{prefix}{h.hexdigest()}"
