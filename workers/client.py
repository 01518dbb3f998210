"""Sending predictions to the workers, by task name (nothing here imports torch)."""

import functools
import logging
import time

import kombu.exceptions
import redis
from celery import Celery
from celery.canvas import Signature

from sieve.database import Database
from sieve.models import CLASSIFY_ONLY, FAILED, PIPELINES, QUEUED, Prediction
from workers import logcontext
from workers.celery_app import CLASSIFY_TASK, FILTER_TASK

log = logging.getLogger(__name__)


class QueueUnavailable(RuntimeError):
    """The broker could not take the prediction's message."""


@functools.cache
def _redis(url: str) -> redis.Redis:
    """One client per broker URL and process."""
    return redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)


_epochs: dict[str, tuple[float, str]] = {}
EPOCH_CACHE_SECONDS = 1.0


def redis_run_id(celery: Celery, fresh: bool = False) -> str:
    """The broker's Redis run id: it changes when Redis restarts (and forgets its queues).

    Cached for a second. A cached id can only be older than the truth, never newer, so a
    message is never recorded as safe in a Redis run that did not receive it; at worst a
    prediction is sent twice, which the idempotent tasks absorb.
    """
    url = celery.conf.broker_url
    cached = _epochs.get(url)
    if not fresh and cached and time.monotonic() - cached[0] < EPOCH_CACHE_SECONDS:
        return cached[1]
    try:
        epoch = _redis(url).info("server")["run_id"]
    except redis.RedisError as exc:
        raise QueueUnavailable(f"the task queue is unreachable: {exc}") from exc
    _epochs[url] = (time.monotonic(), epoch)
    return epoch


def prediction_chain(celery: Celery, prediction_ids: list[str], pipeline: str,
                     request_id: str | None = None) -> Signature:
    """Filter then classifier, or the classifier alone, for the predictions of one
    submission (one message per step). Each task carries the request id in its headers
    (a chain's later tasks keep their own options when sent)."""
    # Nothing reads a prediction task's result (the database is the record): without
    # ignore_result, Celery's Redis result backend subscribes to each task's result
    # channel when it sends the task, and unsubscribes when the AsyncResult is collected.
    options = {"headers": logcontext.headers(request_id), "ignore_result": True}
    if pipeline == CLASSIFY_ONLY:
        return celery.signature(CLASSIFY_TASK, args=(prediction_ids,), **options)
    return (celery.signature(FILTER_TASK, args=(prediction_ids,), **options)
            | celery.signature(CLASSIFY_TASK, **options))


def send(celery: Celery, prediction_ids: list[str], pipeline: str,
         request_id: str | None = None) -> None:
    """Send the chain; QueueUnavailable when the broker does not take it."""
    try:
        prediction_chain(celery, prediction_ids, pipeline, request_id).apply_async()
    except (redis.RedisError, kombu.exceptions.OperationalError) as exc:
        raise QueueUnavailable(f"the task queue is unreachable: {exc}") from exc


def enqueue(celery: Celery, db: Database, prediction) -> None:
    """Send an existing prediction's chain again and record which Redis run holds it."""
    # The run id is read before sending: if Redis restarts in between, the record names
    # the old run and recovery sends the chain once more (harmless, idempotent).
    epoch = redis_run_id(celery, fresh=True)
    send(celery, [prediction.id], prediction.pipeline, prediction.request_id)
    db.mark_enqueued(prediction.id, epoch)


def submit(celery: Celery, db: Database, data: bytes, content_type: str, pipeline: str,
           filename: str = "", user_id: int | None = None,
           request_id: str | None = None) -> Prediction:
    """Store one image and its prediction record, then enqueue it (see `submit_many`)."""
    return submit_many(celery, db, [(data, content_type, filename)], pipeline, user_id,
                       request_id)[0]


def submit_many(celery: Celery, db: Database, uploads: list[tuple[bytes, str, str]],
                pipeline: str, user_id: int | None = None, request_id: str | None = None,
                webhook: dict | None = None) -> list[Prediction]:
    """Store (image, content type, file name) uploads and their prediction records in one
    transaction, then enqueue them as one chain (the workers run them together).

    Raises QueueUnavailable when Redis cannot take them: before anything is stored when
    Redis does not answer at all, or after marking the new predictions failed when the
    message itself could not be sent. Either way nothing runs behind the caller's back.
    `webhook` ({"url", "events", "token_id"}, checked by the caller) is where the
    predictions' events are posted.
    """
    if pipeline not in PIPELINES:  # before Redis is asked anything
        raise ValueError(f"unknown pipeline {pipeline!r}: choose one of {PIPELINES}")
    epoch = redis_run_id(celery)
    predictions = db.create_submissions([(uploads, pipeline, user_id, request_id, webhook)],
                                        redis_run_id=epoch)[0]
    ids = [p.id for p in predictions]
    try:
        send(celery, ids, pipeline, request_id)
    except QueueUnavailable as exc:
        db.transitions({pid: {"reason": str(exc)} for pid in ids}, FAILED, (QUEUED,))
        raise
    return predictions
