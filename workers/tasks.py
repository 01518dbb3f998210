"""The Celery tasks: thin wrappers that handle retries and the chain; the work is in
`workers.pipeline`. Imported by worker processes only (it loads torch).
"""

import logging
import threading
import time

import kombu.exceptions
import redis
import sqlalchemy.exc
import torch
from celery import Task, shared_task
from celery.signals import (
    task_postrun,
    task_prerun,
    worker_process_init,
    worker_ready,
    worker_shutdown,
)

from sieve.database import Database
from sieve.pubsub import Events
from sieve.queues import SERVING_QUEUES
from workers import logcontext, metrics, pipeline  # noqa: F401 - logcontext tags log lines
from workers.batching import MicroBatcher
from workers.celery_app import CLASSIFY_TASK, FILTER_TASK
from workers.recovery import Recovery
from workers.reloading import Reloader, worker_name
from workers.serving import ServedModels

log = logging.getLogger(__name__)

# Worth another try later: the database or Redis unreachable for a moment.
TRANSIENT = (sqlalchemy.exc.OperationalError, redis.ConnectionError, redis.TimeoutError)
# What a task meets when Redis or the database is away, also after its retries, or when
# the next step of its chain cannot be sent.
UNREACHABLE = (*TRANSIENT, kombu.exceptions.OperationalError)

WAKE_INTERVAL = 0.005  # seconds

_state: dict = {}
_started: dict[str, float] = {}
_state_lock = threading.Lock()


def services() -> pipeline.Services:
    """This process's database, events and models, created on first use (after a fork)."""
    with _state_lock:
        if "services" not in _state:
            settings = worker_settings()
            # Small models: one thread per forward pass leaves the other core to the task
            # threads, instead of a second OpenMP thread spinning between passes.
            torch.set_num_threads(settings.torch_threads)
            _state["services"] = pipeline.Services(
                db=Database(settings.database_url), events=Events(settings.redis_url),
                models=ServedModels(max_batch=settings.batch_max_size),
                time_limit=settings.task_time_limit, top_k=settings.top_k)
        return _state["services"]


def steps() -> dict[str, MicroBatcher]:
    """This process's batchers of whole pipeline steps, one per step.

    A task hands its prediction ids to its step's batcher and waits: the ids that wait at
    the same moment (tasks of other messages, in other pool threads) go through
    `pipeline.filter_many` or `pipeline.classify_many` together, so they share one query,
    one forward pass per model and one transaction per state change. A lone task runs its
    step in its own thread, at once."""
    with _state_lock:
        if "steps" not in _state:
            size = worker_settings().batch_max_size
            _state["steps"] = {"filter": MicroBatcher(_filter_together, size, "filter step"),
                               "classify": MicroBatcher(_classify_together, size,
                                                        "classifier step")}
        return _state["steps"]


def worker_settings():
    """The service settings of this worker's Celery app."""
    from workers import app
    return app.conf.sieve


def _filter_together(prediction_ids: list[str]) -> list[bool]:
    """The filter step for ids that waited together (and the classifier step of those it
    accepts, on a worker that `classifies_here`): for each, whether it was accepted."""
    accepted = set(pipeline.filter_many(services(), prediction_ids,
                                        then_classify=classifies_here()))
    return [pid in accepted for pid in prediction_ids]


def _classify_together(prediction_ids: list[str]) -> list[None]:
    """The classifier step for ids that waited together."""
    pipeline.classify_many(services(), prediction_ids)
    return [None] * len(prediction_ids)


def _step(name: str, prediction_ids: list[str] | str) -> list:
    """Run a message's step: a result per id (a lone id, from a message of an earlier
    version, counts as a list of one). The images of one submission are a batch already
    and run in the task's own thread, beside other steps (their forward passes take
    turns); a single image waits with whatever waits with it, at most three times the
    task time limit (the step bounds each wait for a model by the limit, and a filter
    step may go on to the classifier)."""
    ids = [prediction_ids] if isinstance(prediction_ids, str) else prediction_ids
    batcher = steps()[name]
    if len(ids) > 1:
        return batcher.run(ids)
    return batcher(ids, 3 * worker_settings().task_time_limit)


class PredictionTask(Task):
    """Retries transient errors with backoff; once out of retries, fails the prediction."""

    autoretry_for = TRANSIENT
    ignore_result = True  # the database is the record; nothing reads Celery's copy
    retry_backoff = 1
    retry_backoff_max = 30
    retry_jitter = True
    max_retries = 6

    def on_failure(self, exc, task_id, args, kwargs, einfo) -> None:
        """Record the failure on the predictions (the worker itself keeps going).

        Not when Redis or the database could not be reached: that says nothing about the
        images, and the predictions stay unfinished for recovery to send again once the
        broker is back (see workers.recovery)."""
        ids = args[0] if isinstance(args[0], list) else [args[0]]
        if isinstance(exc, UNREACHABLE):
            log.warning("predictions %s left unfinished for recovery: %s", ids, exc)
            return
        try:
            services().fail_many({pid: f"internal error in {self.name}: {exc}" for pid in ids})
        except TRANSIENT:
            log.exception("could not record the failure of predictions %s", ids)


def classifies_here() -> bool:
    """Whether this worker runs the classifier step of the images it accepted itself,
    instead of sending it to the classify queue: it consumes that queue too, and
    SIEVE_CHAIN_LOCALLY is on.

    The message would come back to this very process, or to one just like it: running the
    step at once spares a publish, a delivery and an acknowledgement per image (about
    half of Celery's work for a prediction), and a second read of the records. The
    filter message is acknowledged only after both steps, so a worker that dies in
    between has it delivered again, and the redelivery goes on from the state the
    prediction reached (`pipeline.filter_many`)."""
    return worker_settings().chain_locally and "classify" in _state.get("queues", ())


@shared_task(name=FILTER_TASK, bind=True, base=PredictionTask)
def filter_images(self, prediction_ids: list[str]) -> list[str]:
    """Score a submission's images; the accepted ones go on to the classifier."""
    ids = [prediction_ids] if isinstance(prediction_ids, str) else prediction_ids
    accepted = [pid for pid, on in zip(ids, _step("filter", ids), strict=True) if on]
    if not accepted or classifies_here():
        # Rejected, failed or cancelled, or classified already in the step: do not send
        # the classifier step.
        self.request.chain = None
    return accepted


@shared_task(name=CLASSIFY_TASK, bind=True, base=PredictionTask)
def classify_images(self, prediction_ids: list[str]) -> list[str]:
    """Classify a submission's accepted images (or all of them, classifier-only)."""
    _step("classify", prediction_ids)
    return prediction_ids


@task_prerun.connect
def _task_started(task_id, **_kwargs) -> None:
    """Remember when a task started, for its duration metric."""
    _started[task_id] = time.perf_counter()


@task_postrun.connect
def _task_finished(task_id, task, state=None, **_kwargs) -> None:
    """Observe the task's duration with its outcome."""
    started = _started.pop(task_id, None)
    if started is not None:
        metrics.TASK_SECONDS.labels(task.name, (state or "unknown").lower()).observe(
            time.perf_counter() - started)


@worker_ready.connect
def _start_serving(sender, **_kwargs) -> None:
    """Serve /metrics; on a worker that serves predictions, load models, start recovery."""
    queues = {queue.name for queue in sender.task_consumer.queues}
    _state["queues"] = frozenset(queues)
    metrics.serve(sender.app.conf.sieve.worker_metrics_port, sender.app.conf.broker_url,
                  sorted(queues), sender.app.conf.sieve.worker_metrics_host)
    if not queues & set(SERVING_QUEUES):
        return
    if "thread" in type(sender.pool).__module__:
        # A task finished in a pool thread acknowledges its message from that thread,
        # which does not wake the worker's event loop: with the prefetch limit reached, the
        # worker would sit idle for up to seconds before it takes the next messages
        # (celery/celery#6941). A short timer of the worker's own bounds that pause.
        sender.timer.call_repeatedly(WAKE_INTERVAL, _wake)
    current = services()
    if "prefork" not in type(sender.pool).__module__:
        current.models.warm_up()  # forked children load their own copy on first use
        _start_reloader(current.models, worker_name(sender.hostname), queues)
    recovery = Recovery(sender.app, current.db, sender.app.conf.sieve.recovery_interval)
    recovery.start()
    _state["recovery"] = recovery


def _start_reloader(models: ServedModels, worker: str, queues) -> None:
    """Switch this process's models when the registry announces a change, and on a timer."""
    settings = worker_settings()
    _state["reloader"] = Reloader(models, worker, settings.redis_url,
                                  settings.model_reload_interval, tuple(queues)).start()


@worker_process_init.connect
def _start_child(**_kwargs) -> None:
    """A prefork child of a serving worker keeps its own models current (it is forked
    before the worker is ready: the queues come from the app's consumer setup)."""
    from workers import app
    queues = set(app.amqp.queues.consume_from)
    if queues & set(SERVING_QUEUES):
        _start_reloader(services().models, worker_name(), queues)


def _wake() -> None:
    """Nothing: being called is the point (the event loop runs a round)."""


@worker_shutdown.connect
def _stop_serving(**_kwargs) -> None:
    """Stop the recovery loop and the reloader with the worker."""
    if "recovery" in _state:
        _state["recovery"].stopped.set()
    if "reloader" in _state:
        _state["reloader"].stop()
