"""What a partition's code read while it ran (or while its modules were imported), as values.

A dependency is named `kind:name`: `file:assets/queries/daily.sql` (relative to the project root,
absolute outside it), `dir:config` (a folder's listing: a body that globs sees new files) or
`env:FEATURE_MODE`. The manifest keeps, for each, a keyed digest of what was read: an HMAC under a
key every host writing to the same store shares, so two workers agree, while neither a value of the
environment nor a secret file's hash can be recovered (or guessed and checked) from what is stored.
Standard library only.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Mapping

FILE, DIR, ENV = "file", "dir", "env"
_WHAT = {FILE: "file", DIR: "folder listing of", ENV: "environment variable"}


def dep(kind: str, name: str) -> str:
    """The name of one dependency, e.g. dep("env", "FEATURE_MODE") == "env:FEATURE_MODE"."""
    return f"{kind}:{name}"


def split(dep_name: str) -> tuple[str, str]:
    """("env", "FEATURE_MODE") of "env:FEATURE_MODE"."""
    kind, _, name = dep_name.partition(":")
    return kind, name


def keyed_digest(key: bytes, dep_name: str, value: bytes | None) -> str:
    """HMAC-SHA256 of (dependency, value) under `key`; `None` (absent file, unset variable) has its own digest."""
    body = dep_name.encode("utf-8", "surrogateescape") + b"\0" + (b"\0absent" if value is None else b"\1" + value)
    return hmac.new(key, body, hashlib.sha256).hexdigest()[:32]


def listing_bytes(names: list[str]) -> bytes:
    """What a folder listing counts by: its sorted entry names."""
    return "\0".join(sorted(names)).encode("utf-8", "surrogateescape")


def describe(dep_name: str) -> str:
    """ "file assets/x.json", "environment variable FEATURE_MODE", ..."""
    kind, name = split(dep_name)
    return f"{_WHAT.get(kind, kind)} {name}"


def changes(recorded: Mapping[str, str], now: Mapping[str, str]) -> list[str]:
    """Readable reasons for every dependency whose digest differs: "file assets/x.json changed"."""
    out = []
    for name in sorted(set(recorded) | set(now)):
        if name not in recorded:
            out.append(f"{describe(name)} declared")
        elif name not in now:
            out.append(f"{describe(name)} no longer declared")
        elif recorded[name] != now[name]:
            out.append(f"{describe(name)} changed")
    return out
