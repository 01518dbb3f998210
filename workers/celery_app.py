"""The Celery app: configured from the environment, JSON only, routes in configuration.

Serving workers use the threads pool: several prediction tasks run at once in one process
and share one copy of each model, which is what lets the micro-batcher run their steps
together (see `workers.tasks.steps`). Celery enforces time limits only in the prefork pool, so
each prediction task also bounds its own wait for the model (SIEVE_TASK_TIME_LIMIT).
"""

from celery import Celery

from sieve.config import Settings, get_settings
from sieve.queues import CLASSIFY_QUEUE, FILTER_QUEUE, TRAINING_QUEUE, WEBHOOKS_QUEUE

# The two steps of a prediction; each message carries the ids of one submission's images.
FILTER_TASK, CLASSIFY_TASK = "sieve.filter", "sieve.classify"
TRAIN_TASK = "sieve.train.run"
WEBHOOK_TASK = "sieve.webhooks.deliver"

ROUTES = {
    FILTER_TASK: {"queue": FILTER_QUEUE},
    CLASSIFY_TASK: {"queue": CLASSIFY_QUEUE},
    "sieve.train.*": {"queue": TRAINING_QUEUE},
    "sieve.webhooks.*": {"queue": WEBHOOKS_QUEUE},
}


def create_celery(settings: Settings | None = None) -> Celery:
    """A Celery app for Sieve; connects to nothing until it sends or consumes."""
    settings = settings or get_settings()
    app = Celery("sieve", include=["workers.tasks", "workers.training_tasks",
                                   "workers.webhooks"])
    app.conf.update(
        broker_url=settings.broker_url,
        result_backend=settings.result_backend,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        task_routes=ROUTES,
        task_default_queue=FILTER_QUEUE,
        # Redelivery: a message is acknowledged only once its task has finished, and a
        # worker that dies mid-task gives its messages back to the queue.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        # Unacknowledged messages of a dead worker return to the queue after this long.
        broker_transport_options={"visibility_timeout": settings.visibility_timeout},
        broker_connection_retry_on_startup=True,
        worker_pool="threads",
        worker_concurrency=settings.batch_max_size,
        task_time_limit=settings.task_time_limit * 2,
        task_soft_time_limit=settings.task_time_limit,
        result_expires=24 * 3600,
        result_backend_always_retry=True,
        result_backend_max_retries=10,
        # Task events cost a Redis message per task state; Flower switches them on in the
        # workers when it starts (and a user can with `celery -A workers control enable_events`).
        worker_send_task_events=False,
    )
    app.conf.sieve = settings
    return app
