"""Decide, per partition, whether to run or skip, with a reason a person can read."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Mapping

from skipwise.core.manifest import SCHEME_VERSION, Manifest
from skipwise.core.metakeys import NOT_RESTORABLE
from skipwise.core.observed import changes


class Action(StrEnum):
    """What planning decided for a partition (equal to its string: "run" == Action.RUN)."""

    RUN = "run"
    SKIP = "skip"
    BLOCKED = "blocked"
    #: its current fingerprint was computed before and that version is kept: made current again
    RESTORE = "restore"


class OutputState(StrEnum):
    """What a store found of a committed partition's output."""

    OK = "ok"  # there, with the recorded hash
    MISSING = "missing"
    CHANGED = "changed"  # there, with other bytes (or, on an object store, another size or ETag)


RUN, SKIP, BLOCKED, RESTORE = Action.RUN, Action.SKIP, Action.BLOCKED, Action.RESTORE
#: Actions that change what the partition holds (and so what its dependents read).
CHANGES = (RUN, RESTORE)
#: What each fingerprint scheme changed, for the one-time recompute an upgrade causes.
SCHEME_CHANGES = {
    3: "files and environment variables the code reads now count, Dagster and skipwise versions no longer do "
    "(recomputed once after upgrading)",
}


@dataclass(frozen=True)
class Current:
    """The partition's provenance as of now (what it would be computed from)."""

    code_version: str
    params_digest: str
    inputs: Mapping[str, Mapping[str, str | None]]  # None: the upstream partition is not available
    fingerprint: str
    #: the files and variables the last computation read (and those declared), as they are now
    observed: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Decision:
    """RUN, SKIP, RESTORE or BLOCKED for one partition, and why. RESTORE: its current fingerprint
    was computed before and that version is still kept, so it is made current again, not recomputed."""

    asset: str
    partition: str
    action: Action
    reason: str
    fingerprint: str

    def __bool__(self) -> bool:  # truthy when the partition's contents change
        return self.action in CHANGES


def missing_inputs(current: Current) -> list[str]:
    """The `dep[key]` labels of upstream partitions that are not available."""
    return [f"{dep}[{k}]" for dep, vs in sorted(current.inputs.items()) for k, v in sorted(vs.items()) if v is None]


def decide(asset: str, partition: str, current: Current, manifest: Manifest | None, output_state: str) -> Decision:
    """Compare `current` with the committed `manifest`; `output_state` is "ok", "missing" or "changed"."""

    def make(action: Action, reason: str) -> Decision:
        return Decision(asset, partition, action, reason, current.fingerprint)

    missing = missing_inputs(current)
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        return make(BLOCKED, f"input {missing[0]}{more} not materialized")
    if manifest is None:
        return make(RUN, "missing")
    if manifest.scheme != SCHEME_VERSION:
        return make(
            RUN,
            f"fingerprint scheme changed ({manifest.scheme} -> {SCHEME_VERSION}): {SCHEME_CHANGES.get(SCHEME_VERSION, 'new scheme')}",
        )
    if not manifest.consistent():
        return make(RUN, "manifest does not match its own provenance (edited by hand?)")
    if manifest.fingerprint == current.fingerprint:
        if output_state == OutputState.OK:
            return make(SKIP, "up to date")
        return make(RUN, f"output file {output_state}")
    return make(RUN, "; ".join(explain(asset, current, manifest)) or "fingerprint changed")


def explain(asset: str, current: Current, manifest: Manifest) -> list[str]:
    """Why `current` differs from `manifest`: code, params, then the inputs that changed."""
    reasons = []
    if current.code_version != manifest.code_version:
        reasons.append(f"code of {asset} changed")
    if current.params_digest != manifest.params_digest:
        reasons.append("params changed")
    reasons += changes(manifest.observed, current.observed)
    changed = []
    for dep in sorted(set(current.inputs) | set(manifest.inputs)):
        now, was = current.inputs.get(dep, {}), manifest.inputs.get(dep, {})
        for key in sorted(set(now) | set(was)):
            if key not in was:
                changed.append(f"input {dep}[{key}] added")
            elif key not in now:
                changed.append(f"input {dep}[{key}] removed")
            elif now[key] != was[key]:
                changed.append(f"input {dep}[{key}] changed")
    if changed:
        more = f" (and {len(changed) - 1} more)" if len(changed) > 1 else ""
        reasons.append(changed[0] + more)
    return reasons


def restorable(decision: Decision, kept: Manifest | None, kept_state: str) -> Decision:
    """`decision` turned into RESTORE when it would RUN and `kept` (the partition's kept version
    with the decision's fingerprint) is whole: consistent with its provenance, the same
    partition and fingerprint, its output present with the recorded hash (`kept_state` "ok")."""
    if (
        decision.action != RUN
        or not decision.fingerprint
        or kept is None
        or kept_state != OutputState.OK
        or kept.fingerprint != decision.fingerprint
        or kept.partition != decision.partition
        or kept.asset != decision.asset
        or kept.scheme != SCHEME_VERSION
        or not kept.consistent()
        or (kept.metadata or {}).get(NOT_RESTORABLE)
    ):
        return decision
    when = f" on {kept.created_at[:10]}" if kept.created_at else ""
    return Decision(
        decision.asset,
        decision.partition,
        RESTORE,
        f"{decision.reason}; a kept version computed{when} has this fingerprint (restore, no compute)",
        decision.fingerprint,
    )
