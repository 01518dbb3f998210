"""Sending predictions to the workers, by task name (nothing here imports torch)."""

import contextlib
import functools
import logging
import threading
import time
from collections.abc import Iterator

import kombu.exceptions
import redis
from celery import Celery
from celery.canvas import Signature

from sieve.database import Database
from sieve.models import CLASSIFY_ONLY, FAILED, PIPELINES, QUEUED, Prediction
from workers import logcontext
from workers.celery_app import CLASSIFY_MANY_TASK, CLASSIFY_TASK, FILTER_MANY_TASK, FILTER_TASK

log = logging.getLogger(__name__)


class QueueUnavailable(RuntimeError):
    """The broker could not take the prediction's message."""


@functools.cache
def _redis(url: str) -> redis.Redis:
    """One client per broker URL and process."""
    return redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)


_epochs: dict[str, tuple[float, str]] = {}
EPOCH_CACHE_SECONDS = 1.0


def broker_epoch(celery: Celery, fresh: bool = False) -> str:
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


def prediction_chain(celery: Celery, prediction_ids: str | list[str], pipeline: str,
                     request_id: str | None = None) -> Signature:
    """Filter then classifier, or the classifier alone, for one prediction (an id) or for
    the predictions of one submission together (a list of ids: one message per step).
    Each task carries the request id in its headers (a chain's later tasks keep their own
    options when sent)."""
    # Nothing reads a prediction task's result (the database is the record): without
    # ignore_result, Celery's Redis result backend subscribes to each task's result
    # channel when it sends the task, and unsubscribes when the AsyncResult is collected.
    options = {"headers": logcontext.headers(request_id), "ignore_result": True}
    if isinstance(prediction_ids, list) and len(prediction_ids) == 1:
        prediction_ids = prediction_ids[0]
    one = isinstance(prediction_ids, str)
    first, second = (FILTER_TASK, CLASSIFY_TASK) if one else (FILTER_MANY_TASK,
                                                              CLASSIFY_MANY_TASK)
    if pipeline == CLASSIFY_ONLY:
        return celery.signature(second, args=(prediction_ids,), **options)
    return (celery.signature(first, args=(prediction_ids,), **options)
            | celery.signature(second, **options))


def send(celery: Celery, prediction_ids: str | list[str], pipeline: str,
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
    epoch = broker_epoch(celery, fresh=True)
    send(celery, prediction.id, prediction.pipeline, prediction.request_id)
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
    submission = Submission(uploads, pipeline, user_id, request_id, webhook)
    _store_and_send(celery, db, [submission])
    return submission.result(0)


class Submission:
    """One caller's uploads on their way to the queue; `result` waits for the outcome."""

    def __init__(self, uploads: list[tuple[bytes, str, str]], pipeline: str,
                 user_id: int | None, request_id: str | None, webhook: dict | None = None):
        self.uploads, self.pipeline = uploads, pipeline
        self.user_id, self.request_id, self.webhook = user_id, request_id, webhook
        self.predictions: list[Prediction] = []
        self.error: BaseException | None = None
        self.settled = threading.Event()

    def settle(self, error: BaseException | None = None) -> None:
        """The predictions are stored and sent (or `error` says why not)."""
        self.error = error
        self.settled.set()

    def result(self, timeout: float) -> list[Prediction]:
        """The stored and sent predictions; the error that stopped them, raised."""
        if not self.settled.wait(timeout):
            raise QueueUnavailable(f"the submission was not sent within {timeout:g} s")
        if self.error is not None:
            raise self.error
        return self.predictions


def _store_and_send(celery: Celery, db: Database, submissions: list[Submission]) -> None:
    """Store the submissions in one transaction and send one chain per pipeline, then
    settle each of them: with its predictions, or with the error that stopped it."""
    try:
        epoch = broker_epoch(celery)
        created = db.create_submissions(
            [(s.uploads, s.pipeline, s.user_id, s.request_id, s.webhook)
             for s in submissions],
            redis_run_id=epoch)
    except BaseException as exc:
        for submission in submissions:
            submission.settle(exc)
        raise
    by_pipeline: dict[str, list[Submission]] = {}
    for submission, predictions in zip(submissions, created, strict=True):
        submission.predictions = predictions
        by_pipeline.setdefault(submission.pipeline, []).append(submission)
    for pipeline, group in by_pipeline.items():
        ids = [p.id for s in group for p in s.predictions]
        request_ids = {s.request_id for s in group}
        try:
            # A message's request id is named on the worker's log lines for it, when the
            # message carries one request's images.
            send(celery, ids, pipeline, request_ids.pop() if len(request_ids) == 1 else None)
        except QueueUnavailable as exc:
            error: BaseException = exc
            try:
                db.transitions({pid: {"reason": str(exc)} for pid in ids}, FAILED, (QUEUED,))
            except BaseException as failed:  # noqa: BLE001 - each caller hears of it
                error = failed
            for submission in group:
                submission.settle(error)
        else:
            for submission in group:
                submission.settle()


class Submitter:
    """Submissions of many threads of one process, stored and sent together.

    Group commit: a caller that finds no other submission being sent sends its own at
    once, so a lone submission waits for nothing. Submissions that arrive while one is
    being sent wait for it, then go together, up to `most` images: one transaction and one
    message for all of them, run by the workers as one batch (`sieve.filter_many`). Under
    load, messages carry more images and each costs less; at rest nothing changes.
    Each prediction keeps its own record, owner, request id, states and events.
    """

    def __init__(self, celery: Celery, db: Database, most: int = 32,
                 max_wait: float = 0.002, timeout: float = 30.0):
        self.celery, self.db, self.most = celery, db, most
        self.max_wait, self.timeout = max_wait, timeout
        self._pending: list[Submission] = []
        self._incoming = 0  # announced submissions on their way
        self._sending = False
        self._changed = threading.Condition()
        self.messages = 0  # sent (or tried), for the benchmarks

    @contextlib.contextmanager
    def announced(self) -> Iterator["Announced"]:
        """Say that a submission is on its way (its request is being read and checked):
        while announced submissions are coming, the one about to be sent waits for them,
        at most `max_wait` seconds. Submit with the handle, or leave without submitting."""
        handle = Announced(self)
        with self._changed:
            self._incoming += 1
        try:
            yield handle
        finally:
            handle.arrived()

    def submit_many(self, uploads: list[tuple[bytes, str, str]], pipeline: str,
                    user_id: int | None = None, request_id: str | None = None,
                    announced: "Announced | None" = None,
                    webhook: dict | None = None) -> list[Prediction]:
        """What `workers.client.submit_many` does, sent together with whatever other
        submissions wait at the same time."""
        if pipeline not in PIPELINES:  # here, so that it cannot fail the others' group
            raise ValueError(f"unknown pipeline {pipeline!r}: choose one of {PIPELINES}")
        mine = Submission(uploads, pipeline, user_id, request_id, webhook)
        deadline = time.monotonic() + self.timeout
        with self._changed:
            self._pending.append(mine)
            if announced is not None:
                announced.arrived(locked=True)
            self._changed.notify_all()
        while True:
            with self._changed:
                while self._sending and not mine.settled.is_set():
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._changed.wait(remaining)
                if mine.settled.is_set():
                    break
                if self._sending:  # still waiting for its turn past the deadline
                    if mine in self._pending:
                        self._pending.remove(mine)
                        mine.settle(QueueUnavailable("the submission queue did not take "
                                                     f"this upload within {self.timeout:g} s"))
                    break
                # Nobody is sending: send the oldest waiting ones (this caller's own among
                # them, or next time round), with those announced that come in time.
                self._sending = True
                self._wait_for_company()
                group = self._take()
            self._send(group)
        return mine.result(self.timeout)

    def _send(self, group: list[Submission]) -> None:
        """Store and send a group (each submission is settled), then let the next go."""
        try:
            self.messages += 1
            _store_and_send(self.celery, self.db, group)
        except BaseException as exc:  # noqa: BLE001 - each caller hears of it
            for submission in group:
                if not submission.settled.is_set():
                    submission.settle(exc)
        finally:
            with self._changed:
                self._sending = False
                self._changed.notify_all()

    def _wait_for_company(self) -> None:
        """While announced submissions are on their way and there is room for them, wait
        for them (at most max_wait seconds). Called holding the lock."""
        until = time.monotonic() + self.max_wait
        while (self._incoming > 0
               and sum(len(s.uploads) for s in self._pending) < self.most):
            remaining = until - time.monotonic()
            if remaining <= 0:
                return
            self._changed.wait(remaining)

    def _take(self) -> list[Submission]:
        """The oldest waiting submissions, up to `most` images (at least one submission)."""
        group, images = [], 0
        while self._pending and (not group or
                                 images + len(self._pending[0].uploads) <= self.most):
            images += len(self._pending[0].uploads)
            group.append(self._pending.pop(0))
        return group

    def submit(self, data: bytes, content_type: str, pipeline: str, filename: str = "",
               user_id: int | None = None, request_id: str | None = None) -> Prediction:
        """One image (see `submit_many`)."""
        return self.submit_many([(data, content_type, filename)], pipeline, user_id,
                                request_id)[0]


class Announced:
    """A submission announced to a Submitter (see `Submitter.announced`)."""

    def __init__(self, submitter: Submitter):
        self.submitter = submitter
        self._coming = True

    def submit_many(self, uploads: list[tuple[bytes, str, str]], pipeline: str,
                    user_id: int | None = None, request_id: str | None = None,
                    webhook: dict | None = None) -> list[Prediction]:
        """Submit the announced submission (`Submitter.submit_many`)."""
        return self.submitter.submit_many(uploads, pipeline, user_id, request_id, self,
                                          webhook)

    def arrived(self, locked: bool = False) -> None:
        """No longer on its way: submitted, or given up. Counted once."""
        if not locked:
            with self.submitter._changed:
                self.arrived(locked=True)
            return
        if self._coming:
            self._coming = False
            self.submitter._incoming -= 1
            self.submitter._changed.notify_all()
