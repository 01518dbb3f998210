"""Sending predictions to the workers, by task name (nothing here imports torch)."""

import functools
import logging

import kombu.exceptions
import redis
from celery import Celery
from celery.canvas import Signature

from sieve.database import Database
from sieve.models import CLASSIFY_ONLY, FAILED, QUEUED, Prediction
from workers.celery_app import CLASSIFY_TASK, FILTER_TASK

log = logging.getLogger(__name__)


class QueueUnavailable(RuntimeError):
    """The broker could not take the prediction's message."""


@functools.cache
def _redis(url: str) -> redis.Redis:
    """One client per broker URL and process."""
    return redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)


def broker_epoch(celery: Celery) -> str:
    """The broker's Redis run id: it changes when Redis restarts (and forgets its queues)."""
    return _redis(celery.conf.broker_url).info("server")["run_id"]


def prediction_chain(celery: Celery, prediction_id: str, pipeline: str) -> Signature:
    """Filter then classifier, or the classifier alone."""
    classify = celery.signature(CLASSIFY_TASK)
    if pipeline == CLASSIFY_ONLY:
        return celery.signature(CLASSIFY_TASK, args=(prediction_id,))
    return celery.signature(FILTER_TASK, args=(prediction_id,)) | classify


def enqueue(celery: Celery, db: Database, prediction: Prediction) -> None:
    """Send the prediction's chain and record which Redis run holds it."""
    try:
        # Read the run id first: if Redis restarts between the two calls, the record
        # names the old run and recovery sends the chain again (harmless, idempotent).
        epoch = broker_epoch(celery)
        prediction_chain(celery, prediction.id, prediction.pipeline).apply_async()
    except (redis.RedisError, kombu.exceptions.OperationalError) as exc:
        raise QueueUnavailable(f"the task queue is unreachable: {exc}") from exc
    db.mark_enqueued(prediction.id, epoch)


def submit(celery: Celery, db: Database, data: bytes, content_type: str, pipeline: str,
           filename: str = "", user_id: int | None = None,
           request_id: str | None = None) -> Prediction:
    """Store the image and the prediction record, then enqueue it.

    When the queue cannot take it, the prediction is marked failed (the caller answers
    that nothing was accepted) and QueueUnavailable is raised.
    """
    key = db.put_image(data, content_type)
    prediction = db.create_prediction(key, pipeline, filename, user_id, request_id)
    try:
        enqueue(celery, db, prediction)
    except QueueUnavailable as exc:
        db.transition(prediction.id, FAILED, (QUEUED,), reason=str(exc))
        raise
    return prediction
