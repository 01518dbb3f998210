"""The training task and the set-up of training workers: `celery -A workers worker -Q
training`. Imported by worker processes only (it loads torch).

A training run is not redelivered: the task acknowledges its message when it starts
(no acks_late), so a worker that dies mid-run does not hand the run to another worker
half-way; instead its heartbeat stops and the run is marked failed (see
`workers.runs.fail_stale_runs`, run by every worker's watch thread and by `get_run`).
The same thread sends again the queued runs whose message a Redis restart lost.
"""

import logging
import threading

import kombu.exceptions
import redis
import sqlalchemy.exc
from celery import Celery, shared_task
from celery.signals import worker_init, worker_ready, worker_shutdown

from sieve import consumers, redisconn
from sieve.database import Database
from sieve.deployments import DEPLOY_TASK
from sieve.queues import TRAINING_QUEUE
from workers import trainer
from workers.celery_app import TRAIN_TASK
from workers.client import QueueUnavailable
from workers.runs import fail_stale_runs, resend_lost_runs

log = logging.getLogger(__name__)

DAY = 24 * 3600

_state: dict = {}
_state_lock = threading.Lock()


def database() -> Database:
    """This process's Database, created on first use."""
    with _state_lock:
        if "db" not in _state:
            from workers import app
            _state["db"] = Database(app.conf.sieve.database_url)
        return _state["db"]


# The app's time limits are for predictions; a training run may take hours.
@shared_task(name=TRAIN_TASK, bind=True, acks_late=False, reject_on_worker_lost=False,
             ignore_result=True, time_limit=DAY + 60, soft_time_limit=DAY)
def train_model(self, run_id: str) -> str | None:
    """Run one queued training run (a run that is not queued any more is left alone)."""
    settings = self.app.conf.sieve
    return trainer.execute(database(), settings.redis_url, run_id,
                           worker=self.request.hostname or "unknown",
                           task_id=self.request.id, heartbeat=settings.training_heartbeat)


@shared_task(name=DEPLOY_TASK, acks_late=False, time_limit=2 * 3600 + 60,
             soft_time_limit=2 * 3600)
def deploy_to_sagemaker(name: str, version: str) -> dict:
    """Deploy the versions the workers serve to the SageMaker endpoint, after `name`
    `version` went into production (sieve/deployments.py)."""
    from training.sagemaker import release  # boto3 and sagemaker-core: only when deploying

    log.info("deploying to SageMaker: %s %s is in production", name, version)
    return release.deploy_served(echo=log.info)


@worker_init.connect
def _one_training_at_a_time(sender, **_kwargs) -> None:
    """A worker that consumes only the training queue runs one task at a time and fetches
    no message ahead: a prefetched training message would wait unacknowledged for the
    whole run and Redis would deliver it again after the visibility timeout."""
    queues = set(sender.app.amqp.queues.consume_from)
    if queues == {TRAINING_QUEUE}:
        sender.concurrency = 1
        sender.app.conf.worker_disable_prefetch = True
    elif TRAINING_QUEUE in queues:
        log.warning("this worker consumes %s: training runs will share it with other tasks; "
                    "run training on its own worker (-Q training)", ", ".join(sorted(queues)))


class StaleRunWatch(threading.Thread):
    """Marks failed the runs whose training worker stopped sending heartbeats."""

    def __init__(self, celery: Celery, db: Database, stale_after: float):
        super().__init__(daemon=True, name="stale-training-runs")
        self.celery, self.db, self.stale_after = celery, db, stale_after
        self.stopped = threading.Event()

    def run(self) -> None:
        """A pass every third of the stale period (1 to 30 s): fail the dead runs, send
        again the queued runs that a Redis restart lost."""
        while not self.stopped.wait(min(30.0, max(1.0, self.stale_after / 3))):
            try:
                fail_stale_runs(self.db, self.stale_after, self.celery.conf.sieve.redis_url)
                resend_lost_runs(self.celery, self.db)
            except (sqlalchemy.exc.OperationalError, redis.RedisError,
                    kombu.exceptions.OperationalError, QueueUnavailable) as exc:
                log.warning("training-run checks skipped: %s", exc)


@worker_ready.connect
def _watch_stale_runs(sender, **_kwargs) -> None:
    """Every worker watches for dead training runs, so one dead worker is always noticed."""
    settings = sender.app.conf.sieve
    watch = StaleRunWatch(sender.app, database(), settings.training_stale_after)
    watch.start()
    _state["watch"] = watch


@worker_shutdown.connect
def _stop_watch(**_kwargs) -> None:
    """Stop the watch with the worker."""
    if "watch" in _state:
        _state["watch"].stopped.set()


def _record_consumer(client: redis.Redis, worker: str, queues: list[str]) -> None:
    """Record the worker's queues on Redis (see workers/consumers.py); a Redis that does
    not answer now is tried again at the next interval."""
    try:
        consumers.record(client, worker, queues)
    except redis.RedisError as exc:
        log.warning("queues of this worker not recorded on Redis: %s", exc)


@worker_ready.connect
def _announce_queues(sender, **_kwargs) -> None:
    """Every worker says which queues it consumes, so that the web tier can tell when
    nobody listens on one (a training run would wait for ever)."""
    client = redisconn.connect(sender.app.conf.sieve.redis_url)
    queues = sorted(queue.name for queue in sender.task_consumer.queues)
    _state["consumer"] = (client, sender.hostname, queues)
    _record_consumer(client, sender.hostname, queues)
    sender.timer.call_repeatedly(consumers.RECORD_INTERVAL, _record_consumer,
                                 (client, sender.hostname, queues))


@worker_shutdown.connect
def _withdraw_queues(**_kwargs) -> None:
    """A worker that shuts down stops counting as a consumer at once."""
    if "consumer" in _state:
        client, worker, queues = _state.pop("consumer")
        try:
            consumers.forget(client, worker, queues)
        except redis.RedisError as exc:
            log.warning("queues of this worker not withdrawn (they expire): %s", exc)
