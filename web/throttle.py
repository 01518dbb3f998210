"""Slowing down password guessing: failed logins counted in Redis, per email and per
client address, with a lockout that doubles with each failure past the limit.

After LOGIN_MAX_FAILURES failures within the window, the email (or address) is locked
for 2 s, then 4 s, 8 s, ... up to LOGIN_LOCKOUT_MAX_SECONDS. A successful login clears
the email's count. When Redis does not answer, logins go on unthrottled (and it is logged).
"""

import hashlib
import logging

import redis
from flask import current_app

from web.services import services

log = logging.getLogger(__name__)

WINDOW_SECONDS = 3600


def _keys(email: str, address: str) -> list[str]:
    """The counters that a login attempt touches (hashed: no emails in Redis keys)."""
    digest = hashlib.sha256(email.strip().lower().encode()).hexdigest()[:32]
    return [f"sieve:login:email:{digest}", f"sieve:login:addr:{address}"]


def locked_for(email: str, address: str) -> int:
    """Seconds until this email and address may try again (0: now)."""
    client = services().events.redis
    try:
        waits = [client.ttl(f"{key}:lock") for key in _keys(email, address)]
    except redis.RedisError as exc:
        log.warning("login throttle unavailable: %s", exc)
        return 0
    return max([0, *waits])


def failed(email: str, address: str) -> int:
    """Count a failed login; returns the lockout it started, in seconds (0: none)."""
    limit = current_app.config["LOGIN_MAX_FAILURES"]
    longest = current_app.config["LOGIN_LOCKOUT_MAX_SECONDS"]
    client = services().events.redis
    lockout = 0
    try:
        for key in _keys(email, address):
            failures = client.incr(key)
            client.expire(key, WINDOW_SECONDS)
            # The per-address limit is looser: many people may share one address.
            allowed = limit if ":email:" in key else limit * 4
            if failures >= allowed:
                seconds = min(2 ** (failures - allowed + 1), longest)
                client.set(f"{key}:lock", 1, ex=seconds)
                lockout = max(lockout, seconds)
    except redis.RedisError as exc:
        log.warning("login throttle unavailable: %s", exc)
    return lockout


def succeeded(email: str) -> None:
    """Forget the email's failures after a successful login."""
    key = _keys(email, "")[0]
    try:
        services().events.redis.delete(key, f"{key}:lock")
    except redis.RedisError as exc:
        log.warning("login throttle unavailable: %s", exc)
