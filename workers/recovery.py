"""Putting lost messages back: what makes a Redis restart or a dead worker lose nothing.

The database, not Redis, is the record of what clients were told. Every serving worker
runs this loop (one at a time, by a Redis lock), every SIEVE_RECOVERY_INTERVAL seconds:

- Redis restarted: Redis here keeps its queues in memory only, so a restart forgets every
  waiting message. Each prediction records the run id of the Redis it was enqueued on; an
  unfinished prediction enqueued on another run is enqueued again.
- A worker died: its unacknowledged messages return to the queue once they are older than
  the visibility timeout. Kombu checks that rarely; this loop asks it every interval.
"""

import logging
import threading

import kombu.exceptions
import redis
import sqlalchemy.exc
from celery import Celery

from sieve.database import Database
from workers.client import QueueUnavailable, _redis, broker_epoch, enqueue

log = logging.getLogger(__name__)

LOCK_KEY = "sieve:recovery:lock"


def restore_unacked(celery: Celery) -> None:
    """Return unacknowledged messages older than the visibility timeout to their queues."""
    with celery.connection_for_write() as connection:
        # A new channel restores on its first call (kombu only rate-limits later calls).
        connection.default_channel.qos.restore_visible(num=1000)


def recover_once(celery: Celery, db: Database, interval: float) -> int:
    """One pass; returns how many predictions were enqueued again."""
    if not _redis(celery.conf.broker_url).set(LOCK_KEY, "1", nx=True, ex=max(1, int(interval))):
        return 0  # another worker holds this pass
    restore_unacked(celery)
    epoch = broker_epoch(celery)
    lost = db.unfinished_outside(epoch)
    for prediction in lost:
        enqueue(celery, db, prediction)
        log.warning("prediction %s (%s) enqueued again: its message was on a Redis run that "
                    "has ended", prediction.id, prediction.state)
    return len(lost)


class Recovery(threading.Thread):
    """The recovery loop, as a daemon thread of a serving worker."""

    def __init__(self, celery: Celery, db: Database, interval: float):
        super().__init__(daemon=True, name="recovery")
        self.celery, self.db, self.interval = celery, db, interval
        self.stopped = threading.Event()

    def run(self) -> None:
        """Pass after pass until stopped; an unreachable Redis or database waits a turn."""
        while not self.stopped.wait(self.interval):
            try:
                recover_once(self.celery, self.db, self.interval)
            except (redis.RedisError, kombu.exceptions.OperationalError, QueueUnavailable,
                    sqlalchemy.exc.OperationalError) as exc:
                log.warning("recovery pass skipped: %s", exc)
