"""The scale-out profile: Dagster's instance on PostgreSQL, steps on Celery workers.

`SKIPWISE_PROFILE=services` switches `skipwise materialize` (and `dvc repro`) from the embedded
default (SQLite instance under $DAGSTER_HOME, steps in this machine's processes) to:

- an instance whose run, event and schedule storage is PostgreSQL (`SKIPWISE_PG_URL`), written to
  `<home>/services/dagster.yaml` (home: $DAGSTER_HOME, else <root>/.dagster); point Dagster's
  webserver at that folder to see the runs;
- every Dagster run executed by `dagster_celery.celery_executor`: each step (one asset of a level
  over the run's span of partitions) is a Celery task on the broker (`SKIPWISE_CELERY_BROKER`),
  its events go to PostgreSQL and its result comes back through `SKIPWISE_CELERY_BACKEND`;
- a level's stale partitions cut into contiguous chunks of `SKIPWISE_CHUNK_PARTITIONS` (or into
  `--workers` chunks), each chunk its own Dagster run, all launched at once: the broker hands
  their steps to whichever worker is free. Hits are decided here at planning, so a chunk holds
  only stale partitions (and the hits between them, which a worker checks and skips) and a level
  with nothing stale launches nothing.

Workers are Celery processes started on any host with the same code checked out, e.g.

    SKIPWISE_ROOT=/srv/project PYTHONPATH=/srv/project \\
        celery -A skipwise.adapters.dagster.celery_app worker -Q dagster --pool solo -c 1

A worker rebuilds the run's job from this module (`celery_job`, a reconstructable job, so nothing
is pickled but its name and arguments). Tasks are acknowledged only when done (`task_acks_late`),
so a worker killed mid-step hands its step back to the broker and another worker runs it: the
partitions it had committed are hits there, the one it was writing had no manifest yet (the
manifest is the commit point) and is computed again.
"""

from __future__ import annotations

import functools
import os
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence
from urllib.parse import urlsplit

from skipwise.adapters.dagster.graph import definitions_in
from skipwise.adapters.dagster.instance import (  # noqa: F401 - the profile's settings, used by celery_app and tests
    DEFAULT_BACKEND,
    DEFAULT_BROKER,
    DEFAULT_CHUNK_PARTITIONS,
    DEFAULT_QUEUE,
    MAX_CHUNKS,
    Settings,
    _safe,
    active,
    dagster_yaml,
    profile,
    require_libraries,
)
from skipwise.adapters.dagster.iomanager import IOManager
from skipwise.adapters.dagster.launch import RANGE_END, RANGE_START, launched
from skipwise.adapters.dagster.split import worker_count
from skipwise.core.errors import ConfigError
from skipwise.project.root import definitions_of

JOB_MODULE = "skipwise.adapters.dagster.services"

# dagster-celery and dagster-postgres 0.29.27 are the newest published; they pin dagster 1.13.27
# and Dagster warns on every import that they trail this 1.13.28 (pyproject.toml says why they are
# used anyway). Only that exact pair is hushed: any other mismatch still shows.
for _library in ("dagster-celery", "dagster-postgres"):
    warnings.filterwarnings(
        "ignore",
        message=rf"Found version mismatch between `dagster-shared` \(1\.13\.28\) "
        rf"expected library version \(0\.29\.28\) and `{_library}` \(0\.29\.27\)",
    )
# dagster-celery registers its step task anew on the app of every run it submits steps for (the
# same callable each time); Celery 5.7 warns once per app that the name is taken. Nothing is lost.
warnings.filterwarnings("ignore", message=r"Task name 'execute_plan' is already registered to a different callable")


def address(url: str) -> tuple[str, int]:
    """(host, port) of a service URL, with the scheme's default port (PostgreSQL, Redis, AMQP)."""
    u = urlsplit(url)
    scheme = u.scheme.split("+")[0]
    default = 5432 if scheme.startswith("postgres") else 6379 if scheme.startswith("redis") else 5672
    return u.hostname or "127.0.0.1", u.port or default


def unreachable(url: str, timeout: float = 3.0) -> str:
    """ "" when a TCP connection to `url`'s host and port opens within `timeout`, else why not."""
    import socket

    try:
        with socket.create_connection(address(url), timeout=timeout):
            return ""
    except OSError as exc:
        return exc.strerror or str(exc) or type(exc).__name__


_checked: set[tuple[str, str]] = set()


def require_celery(settings: Settings) -> None:
    """Fail in one line, before any run is launched, when the broker or the result backend does not
    answer (Celery would otherwise retry, then fail each run with a long traceback)."""
    require_libraries("celery", "dagster_celery")
    key = (settings.broker, settings.backend)
    if key in _checked:
        return
    for what, env, url in (
        ("broker", "SKIPWISE_CELERY_BROKER", settings.broker),
        ("result backend", "SKIPWISE_CELERY_BACKEND", settings.backend),
    ):
        if url.startswith("rpc://"):
            continue  # results come back through the broker
        why = unreachable(url)
        if why:
            host, port = address(url)
            raise ConfigError(
                f"the Celery {what} is not reachable at {host}:{port} ({why})",
                hint=f"start it there, or set {env} to where it runs",
            )
    _checked.add(key)


def chunk_count(stale: int, requested: int | None, settings: Settings | None = None) -> int:
    """How many chunks (Dagster runs) a level with `stale` stale partitions is cut into under the
    profile: `requested` (--workers, $SKIPWISE_WORKERS) when given, else one per
    `chunk_partitions`; at most `MAX_CHUNKS`, at least 1."""
    if requested is None and os.environ.get("SKIPWISE_WORKERS", "").strip():
        requested = worker_count(stale)  # validates it, and caps it at `stale`
    if requested is None:
        size = (settings or Settings.from_env()).chunk_partitions
        requested = -(-stale // size)
    return max(1, min(requested, stale, MAX_CHUNKS))


def job_name(names: Sequence[str]) -> str:
    """The job of one level's assets (a valid Dagster name, the same in every process)."""
    return "skipwise_level__" + "__".join(sorted(names))


def celery_job(definitions: str, names: Sequence[str], root: str) -> Any:
    """The job a Celery worker rebuilds: the assets `names` of the definitions module
    `definitions`, executed by `celery_executor`, with the project's IO manager over `root`.
    Cached per process (a worker runs many steps of the same jobs; its modules are imported once)."""
    return _celery_job(definitions, tuple(names), root)  # the arguments come back from JSON as lists


@functools.lru_cache(maxsize=64)
def _celery_job(definitions: str, names: tuple[str, ...], root: str) -> Any:
    import dagster as dg
    from dagster_celery import celery_executor

    defs = definitions_in(definitions)
    resources = dict(defs.resources or {})
    resources.setdefault("skipwise", IOManager(root=root))
    name = job_name(names)
    job = dg.define_asset_job(name, selection=[dg.AssetKey(n.split("__")) for n in names], executor_def=celery_executor)
    return dg.Definitions(assets=list(defs.assets or ()), resources=resources, jobs=[job]).resolve_job_def(name)


def reconstructable(definitions: str, names: Sequence[str], root: Path) -> Any:
    """`celery_job` as a reconstructable job: a worker loads it by module, function and arguments
    (with `root` on its path, where the definitions module lives)."""
    import dagster as dg

    return dg.build_reconstructable_job(
        JOB_MODULE,
        "celery_job",
        reconstructable_args=(definitions, tuple(sorted(names)), str(root)),
        reconstructor_working_directory=str(root),
    )


def launch(
    project: Any,
    names: list[str],
    span: tuple[str, str] | None,
    instance: Any,
    tags: dict[str, str],
    settings: Settings | None = None,
) -> Any:
    """One Dagster run of `names` over `span` on the profile's instance, its steps on Celery workers;
    returns once the run has ended, as `skipwise.adapters.dagster.launch.Launched`."""
    import dagster as dg

    settings = settings or Settings.from_env()
    require_celery(settings)
    definitions = project.definitions or definitions_of(project.root)
    run_tags = dict(tags)
    if span is not None:
        run_tags.update({RANGE_START: span[0], RANGE_END: span[1]})
    run_config = {
        "loggers": {"console": {"config": {"log_level": "INFO"}}},
        "execution": {"config": settings.executor_config()},
    }
    with dg.execute_job(
        reconstructable(definitions, names, project.root),
        instance=instance,
        run_config=run_config,
        tags=run_tags,
        raise_on_error=False,
    ) as result:
        out = launched(result, list(names))
        if not out.ok and not out.error:
            out = replace(out, error=_run_failure(instance, result.run_id))
        return out


def _run_failure(instance: Any, run_id: str) -> str:
    """The first line of a failed run's engine error (a worker's, or the broker's), when no step said."""
    try:
        from dagster import DagsterEventType

        for record in instance.all_logs(run_id, of_type={DagsterEventType.RUN_FAILURE, DagsterEventType.ENGINE_EVENT}):
            event = record.dagster_event
            data = getattr(event, "event_specific_data", None)
            err = getattr(data, "error", None)
            if err is not None and (err.message or "").strip():
                return err.message.strip().splitlines()[0]
    except Exception:  # noqa: BLE001 - the run's own log says more; this line only points at it
        return f"Dagster run {run_id} failed (its events could not be read: see them in the Dagster UI)"
    return f"Dagster run {run_id} failed (see its events in the Dagster UI)"


def launch_split(
    project: Any, names: list[str], spans: list[tuple[str, str] | None], instance: Any, tags: dict[str, str]
) -> list[Any]:
    """One Dagster run per span, all at once (a thread each waits for its run's steps on the
    workers); one `Launched` per span, in order."""
    from concurrent.futures import ThreadPoolExecutor

    settings = Settings.from_env()
    require_celery(settings)
    if len(spans) == 1:
        return [launch(project, names, spans[0], instance, tags, settings)]
    with ThreadPoolExecutor(max_workers=len(spans), thread_name_prefix="skipwise-chunk") as pool:
        futures = [pool.submit(launch, project, names, span, instance, tags, settings) for span in spans]
        return [f.result() for f in futures]
