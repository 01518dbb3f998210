"""Per-token rate limits and queue back-pressure, both kept in Redis.

Rate limits count requests in fixed windows (`SIEVE_RATE_LIMIT`, e.g. `120/minute`): one
INCR per request on a key that expires with its window. Back-pressure refuses new
predictions while the serving queues hold more than `SIEVE_MAX_QUEUE_DEPTH` messages, so
that a burst gets a 503 with Retry-After instead of an ever-longer wait.
"""

import logging
import math
import re
import time

import redis
from flask import current_app

from sieve import redisconn
from sieve.queues import SERVING_QUEUES
from web.api.errors import fail
from web.services import services

log = logging.getLogger(__name__)

PERIODS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d*)\s*(second|minute|hour|day)s?\s*$")


def parse_rate(text: str) -> tuple[int, int]:
    """`120/minute` or `10/5second` as (requests, seconds); ValueError otherwise."""
    match = RATE.match(text or "")
    if not match:
        raise ValueError(f"SIEVE_RATE_LIMIT={text!r}: write it as N/second, N/minute, "
                         "N/hour or N/day (e.g. 120/minute)")
    count, many, period = match.groups()
    return int(count), int(many or 1) * PERIODS[period]


def check_rate(token_id: int) -> None:
    """Count a request of this token; 429 with Retry-After once its window is full."""
    limit, seconds = current_app.config["SIEVE_RATE_LIMIT_PARSED"]
    if limit <= 0:
        return
    now = time.time()
    window = int(now // seconds)
    key = f"sieve:ratelimit:{token_id}:{window}"
    try:
        client = redisconn.connect(services().settings.redis_url)
        count, _ = client.pipeline().incr(key).expire(key, seconds + 1).execute()
    except redis.RedisError as exc:
        # Without Redis nothing can be queued either; the limit is not what to fail on.
        log.warning("rate limit not checked, Redis is unreachable: %s", exc)
        return
    if count > limit:
        retry = max(1, math.ceil((window + 1) * seconds - now))
        fail(429, f"this token made more than {limit} requests in {seconds} s; "
             f"retry in {retry} s", {"Retry-After": str(retry)})


def queue_depth() -> int:
    """Messages waiting in the serving queues (filter and classify) on the broker."""
    client = redisconn.connect(services().settings.broker_url)
    pipe = client.pipeline()
    for queue in SERVING_QUEUES:
        pipe.llen(queue)
    return sum(pipe.execute())


def check_backpressure(adding: int = 1) -> None:
    """503 with Retry-After when the queues are too deep (or the broker does not answer).
    A submission adds one message, however many images it holds."""
    bound = current_app.config["SIEVE_MAX_QUEUE_DEPTH"]
    try:
        depth = queue_depth()
    except redis.RedisError as exc:
        fail(503, f"the task queue is unreachable: {exc}", {"Retry-After": "5"})
    if bound > 0 and depth + adding > bound:
        fail(503, f"the queue holds {depth} messages, the bound is {bound}: retry later",
             {"Retry-After": str(current_app.config["SIEVE_BACKPRESSURE_RETRY_AFTER"])},
             queue_depth=depth)
