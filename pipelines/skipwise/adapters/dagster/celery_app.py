"""The Celery app of the services profile's workers (`celery -A skipwise.adapters.dagster.celery_app worker`).

Dagster's own app (`dagster_celery.app`) reads its broker from a config module; this one reads the
profile's settings (`SKIPWISE_CELERY_BROKER`, `SKIPWISE_CELERY_BACKEND`) and registers Dagster's
step task with late acknowledgement: a worker that dies mid-step never acknowledged it, so the
broker hands the step to another worker (RabbitMQ does so as soon as the dead worker's connection
drops) instead of the run waiting forever for a result that will not come.
"""

from __future__ import annotations

# First: it hushes the known version warning of dagster-celery and dagster-postgres (see there).
from skipwise.adapters.dagster.services import DEFAULT_QUEUE, Settings  # isort: skip

from dagster_celery.config import DEFAULT_CONFIG, dict_wrapper  # noqa: E402
from dagster_celery.make_app import make_app  # noqa: E402
from dagster_celery.tasks import create_task  # noqa: E402
from kombu import Exchange, Queue  # noqa: E402

_settings = Settings.from_env()

app = make_app(
    {
        "broker": _settings.broker,
        "backend": _settings.backend,
        "include": [],
        "config_source": dict_wrapper(
            {
                **DEFAULT_CONFIG,
                "task_acks_late": True,
                "task_reject_on_worker_lost": True,
                # One step at a time per process: a step already loops over its partitions.
                "worker_prefetch_multiplier": 1,
                "broker_connection_retry_on_startup": True,
            }
        ),
    }
)

if _settings.queue != DEFAULT_QUEUE:
    # Another queue (one deployment or test session apart from the others on the same broker): a
    # run's executor declares it as Celery does a queue it does not know (a direct exchange of the
    # same name, bound by the name), so the workers declare it the same way.
    q = _settings.queue
    app.conf.task_queues = [Queue(q, Exchange(q, type="direct"), routing_key=q)]
    app.conf.task_default_queue = q

execute_plan = create_task(app, acks_late=True, reject_on_worker_lost=True)
