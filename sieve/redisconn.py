"""Redis clients shared within a process: one per URL, with timeouts that fail fast."""

import functools

import redis


@functools.cache
def connect(url: str) -> redis.Redis:
    """The process's client of the Redis at `url` (its pool is shared by every thread)."""
    return redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
