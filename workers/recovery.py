"""Putting lost messages back: what makes a Redis restart or a dead worker lose nothing.

The database, not Redis, is the record of what clients were told. Every serving worker
runs this loop (one at a time, by a Redis lock), every SIEVE_RECOVERY_INTERVAL seconds:

- Redis restarted: Redis here keeps its queues in memory only, so a restart forgets every
  waiting message. Each prediction records the run id of the Redis it was enqueued on; an
  unfinished prediction enqueued on another run is enqueued again.
- A worker died: its unacknowledged messages return to the queue once they are older than
  the visibility timeout. Kombu checks that rarely; this loop asks it every interval.
- A message vanished on the current Redis run: a worker takes a message off its queue
  (BRPOP) and only then records it as unacknowledged, so a worker killed in between loses
  it for good. An unfinished prediction that nothing has touched for twice the visibility
  timeout (by then a dead worker's message would have come back) is enqueued again, at
  most once per that period. One that was merely waiting in a long queue runs twice; the
  idempotent steps make the second delivery a no-op.
"""

import logging
import threading
import time

import kombu.exceptions
import redis
import sqlalchemy.exc
from celery import Celery

from sieve import redisconn
from sieve.database import Database
from workers.client import QueueUnavailable, enqueue, redis_run_id

log = logging.getLogger(__name__)

LOCK_KEY = "sieve:recovery:lock"
NO_RUN = ""  # a Redis run id no prediction is enqueued on: every run is "another" run


def restore_unacked(celery: Celery) -> None:
    """Return unacknowledged messages older than the visibility timeout to their queues."""
    with celery.connection_for_write() as connection:
        # A new channel restores on its first call (kombu only rate-limits later calls).
        connection.default_channel.qos.restore_visible(num=1000)


def recover_once(celery: Celery, db: Database, interval: float,
                 resent: dict[str, float] | None = None) -> int:
    """One pass; returns how many predictions were enqueued again. `resent` (prediction id
    -> when) remembers the stale ones sent again, so that each waits a period before the
    next try."""
    broker = redisconn.connect(celery.conf.broker_url)
    if not broker.set(LOCK_KEY, "1", nx=True, ex=max(1, int(interval))):
        return 0  # another worker holds this pass
    restore_unacked(celery)
    epoch = redis_run_id(celery)
    lost = db.unfinished_outside(epoch)
    for prediction in lost:
        enqueue(celery, db, prediction)
        log.warning("prediction %s (%s) enqueued again: its message was on a Redis run that "
                    "has ended", prediction.id, prediction.state)
    return len(lost) + _resend_stale(celery, db, {p.id for p in lost},
                                     {} if resent is None else resent)


def _resend_stale(celery: Celery, db: Database, done: set[str],
                  resent: dict[str, float]) -> int:
    """Enqueue again the unfinished predictions untouched for twice the visibility timeout."""
    stale_after = 2 * celery.conf.sieve.visibility_timeout
    now = time.monotonic()
    for pid in [pid for pid, at in resent.items() if now - at > stale_after]:
        del resent[pid]
    stale = [p for p in db.unfinished_outside(NO_RUN, idle_for=stale_after)
             if p.id not in done and p.id not in resent]
    for prediction in stale:
        enqueue(celery, db, prediction)
        resent[prediction.id] = now
        log.warning("prediction %s (%s) enqueued again: untouched for %g s, its message was "
                    "lost", prediction.id, prediction.state, stale_after)
    return len(stale)


class Recovery(threading.Thread):
    """The recovery loop, as a daemon thread of a serving worker."""

    def __init__(self, celery: Celery, db: Database, interval: float):
        super().__init__(daemon=True, name="recovery")
        self.celery, self.db, self.interval = celery, db, interval
        self.stopped = threading.Event()
        self.resent: dict[str, float] = {}

    def run(self) -> None:
        """Pass after pass until stopped; an unreachable Redis or database waits a turn."""
        while not self.stopped.wait(self.interval):
            try:
                recover_once(self.celery, self.db, self.interval, self.resent)
            except (redis.RedisError, kombu.exceptions.OperationalError, QueueUnavailable,
                    sqlalchemy.exc.OperationalError) as exc:
                log.warning("recovery pass skipped: %s", exc)
