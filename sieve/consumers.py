"""Which queues have a worker listening: every worker records its queues on Redis.

A worker adds itself, with the time, to one sorted set per queue it consumes
(`sieve:consumers:<queue>`) when it is ready and every RECORD_INTERVAL seconds after, and
removes itself when it shuts down. A worker that died without shutting down drops out
once its entry is older than EXPIRES_AFTER seconds. The web tier reads the count to tell
a user that a training run will wait, because no worker listens on the `training` queue.
Nothing here imports torch.
"""

import logging
import time

import redis

log = logging.getLogger(__name__)

RECORD_INTERVAL = 10.0
EXPIRES_AFTER = 3 * RECORD_INTERVAL
CACHE_SECONDS = 3.0
NO_TRAINING_WORKER = ("no worker listens on the training queue, so a run stays queued "
                      "until one starts (start one with `celery -A workers worker -Q "
                      "training`; `make run` starts one)")


def key(queue: str) -> str:
    """The sorted set of the workers that consume `queue` (member: worker name)."""
    return f"sieve:consumers:{queue}"


def record(client: redis.Redis, worker: str, queues: list[str]) -> None:
    """Say that `worker` consumes `queues` now; forget the entries that have expired."""
    now = time.time()
    with client.pipeline() as pipe:
        for queue in queues:
            pipe.zadd(key(queue), {worker: now})
            pipe.zremrangebyscore(key(queue), "-inf", now - EXPIRES_AFTER)
            pipe.expire(key(queue), int(EXPIRES_AFTER) * 2)
        pipe.execute()


def forget(client: redis.Redis, worker: str, queues: list[str]) -> None:
    """`worker` stops consuming `queues` (it is shutting down)."""
    with client.pipeline() as pipe:
        for queue in queues:
            pipe.zrem(key(queue), worker)
        pipe.execute()


def listening(client: redis.Redis, queue: str, since: float | None = None) -> int:
    """How many workers recorded `queue` within the last EXPIRES_AFTER seconds (and not
    before the time `since`, when given)."""
    oldest = max(time.time() - EXPIRES_AFTER, since or 0.0)
    return int(client.zcount(key(queue), oldest, "+inf"))


_seen: dict[tuple[str, str], tuple[float, int | None]] = {}


def cached_listening(client: redis.Redis, url: str, queue: str) -> int | None:
    """`listening`, read at most once every CACHE_SECONDS per process and queue; None when
    Redis does not answer (the caller then says nothing rather than something wrong)."""
    cached = _seen.get((url, queue))
    if cached and time.monotonic() - cached[0] < CACHE_SECONDS:
        return cached[1]
    try:
        count: int | None = listening(client, queue)
    except redis.RedisError as exc:
        log.warning("could not read the workers of queue %s: %s", queue, exc)
        count = None
    _seen[(url, queue)] = (time.monotonic(), count)
    return count
