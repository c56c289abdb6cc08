"""One Dagster run of a level's assets over a span of partitions, in this process (`launch`), and
what a finished run did (`Launched`: partitions computed and restored per asset, or its failed step
with the first line of its error). A level cut across processes: `skipwise.adapters.dagster.split`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from skipwise.core import metakeys as mk

RANGE_START, RANGE_END = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"
RESULT_PREFIX = "skipwise-launch-result: "


@dataclass(frozen=True)
class Launched:
    """What one Dagster run did: its id, whether it succeeded, computed partitions per asset, and on
    failure the failed step with the first line of its error and its `fix:` line."""

    run_id: str
    ok: bool
    computed: dict[str, int] = field(default_factory=dict)
    restored: dict[str, int] = field(default_factory=dict)
    failed_step: str = ""
    error: str = ""
    fix: str = ""


def launch(
    defs_assets: list,
    resources: dict,
    names: list[str],
    span: tuple[str, str] | None,
    instance: Any,
    tags: dict[str, str],
) -> Launched:
    """One Dagster run of the assets `names` over the partition span (first, last) (None: unpartitioned)."""
    import dagster as dg

    run_tags = dict(tags)
    if span is not None:
        run_tags.update({RANGE_START: span[0], RANGE_END: span[1]})
    result = dg.materialize(
        defs_assets,
        resources=resources,
        selection=[dg.AssetKey(n.split("__")) for n in names],
        instance=instance,
        tags=run_tags,
        raise_on_error=False,
        run_config={"loggers": {"console": {"config": {"log_level": "INFO"}}}},
    )
    return launched(result, names)


def launched(result: Any, names: list[str]) -> Launched:
    """What a finished Dagster run of `names` did, from its result: partitions computed and restored
    per asset (its materializations' cache verdicts) and, on failure, the failed step."""
    computed, restored = {n: 0 for n in names}, {n: 0 for n in names}
    for e in result.get_asset_materialization_events():
        name, cache = "__".join(e.asset_key.path), _cache_of(e)
        if name in computed and cache in ("miss", "restore"):
            (computed if cache == "miss" else restored)[name] += 1
    step, error, fix = failure_of(result) if not result.success else ("", "", "")
    return Launched(result.run_id, bool(result.success), computed, restored, step, error, fix)


def failure_of(result) -> tuple[str, str, str]:
    """(step, first line of its error, its `fix:` line or "") of a Dagster run's first failed step."""
    try:
        events = result.get_step_failure_events()
    except Exception:  # noqa: BLE001 - a result without step events: say what we can
        events = []
    for event in events:
        step = event.step_key or ""
        data = getattr(event, "step_failure_data", None) or getattr(event, "event_specific_data", None)
        described = _skipwise_failure(getattr(data, "user_failure_data", None))
        if described is not None:
            return (step, *described)
        err = getattr(data, "error", None)
        while (
            err is not None
            and getattr(err, "cause", None) is not None
            and "DagsterExecutionStepExecutionError" in (err.cls_name or "")
        ):
            err = err.cause  # Dagster wraps the user's error; the cause is what was raised
        return (step, *_first_line(err))
    return "", "", ""


def _skipwise_failure(user_failure) -> tuple[str, str] | None:
    """(kind: message, `fix: ...` or "") of a step's failure that is a skipwise error
    (`step_failure`), from its metadata; None for any other failure."""
    md = getattr(user_failure, "metadata", None) or {}
    if mk.ERROR not in md:
        return None

    def text(key: str) -> str:
        value = md.get(key)
        return str(getattr(value, "value", value) or "")

    fix = text(mk.ERROR_FIX)
    message = (text(mk.ERROR_MESSAGE).splitlines() or [""])[0]
    return f"{text(mk.ERROR)}: {message}", (f"fix: {fix}" if fix else "")


def _first_line(err) -> tuple[str, str]:
    if err is None:
        return "", ""
    text = (getattr(err, "message", "") or "").strip()
    lines = [line for line in text.splitlines() if line.strip()]
    cls = getattr(err, "cls_name", "") or ""
    if not lines:
        return cls, ""
    first = lines[0]
    if cls and ": " in first and first.split(": ", 1)[0].endswith(cls):
        first = f"{cls}: {first.split(': ', 1)[1]}"  # skipwise.core.errors.InputError: x -> InputError: x
    fix = next((line.strip() for line in lines[1:] if line.strip().startswith("fix:")), "")
    return first, fix


def _cache_of(event) -> str:
    value = event.step_materialization_data.materialization.metadata.get(mk.CACHE)
    return getattr(value, "value", value)
