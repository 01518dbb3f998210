"""Slowing down password guessing: failed logins counted in Redis per (client address,
email) pair and per client address, never per email alone.

After LOGIN_MAX_FAILURES failures of one address on one email within the window, that
pair is locked for 2 s, then 4 s, 8 s, ... up to LOGIN_LOCKOUT_MAX_SECONDS; after
LOGIN_MAX_FAILURES_PER_ADDRESS failures of one address on any emails, the address is
locked the same way. Someone else's failures never lock an account's owner out: a right
password from an address without failures goes through. The client address is the one
`web.security` reads through the configured number of trusted proxies. A successful
login clears its pair's count. When Redis does not answer, logins go on unthrottled (and
it is logged).
"""

import hashlib
import logging

import redis
from flask import current_app

from web.services import services

log = logging.getLogger(__name__)

WINDOW_SECONDS = 3600


def _digest(text: str) -> str:
    """A short hash: no emails or addresses in Redis keys."""
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _keys(email: str, address: str) -> dict[str, int]:
    """The counters that a login attempt touches, with the failures each allows."""
    config = current_app.config
    pair = _digest(f"{address}\0{email.strip().lower()}")
    return {f"sieve:login:pair:{pair}": config["LOGIN_MAX_FAILURES"],
            f"sieve:login:addr:{_digest(address)}": config["LOGIN_MAX_FAILURES_PER_ADDRESS"]}


def locked_for(email: str, address: str) -> int:
    """Seconds until this address may try this email again (0: now)."""
    client = services().events.redis
    try:
        waits = [client.ttl(f"{key}:lock") for key in _keys(email, address)]
    except redis.RedisError as exc:
        log.warning("login throttle unavailable: %s", exc)
        return 0
    return max([0, *waits])


def failed(email: str, address: str) -> int:
    """Count a failed login; returns the lockout it started, in seconds (0: none)."""
    longest = current_app.config["LOGIN_LOCKOUT_MAX_SECONDS"]
    client = services().events.redis
    lockout = 0
    try:
        for key, allowed in _keys(email, address).items():
            failures, _ = client.pipeline().incr(key).expire(key, WINDOW_SECONDS).execute()
            if failures >= allowed:
                seconds = min(2 ** min(failures - allowed + 1, 30), longest)
                client.set(f"{key}:lock", 1, ex=seconds)
                lockout = max(lockout, seconds)
    except redis.RedisError as exc:
        log.warning("login throttle unavailable: %s", exc)
    return lockout


def succeeded(email: str, address: str) -> None:
    """Forget the failures of this address on this email after a successful login."""
    key = next(iter(_keys(email, address)))
    try:
        services().events.redis.delete(key, f"{key}:lock")
    except redis.RedisError as exc:
        log.warning("login throttle unavailable: %s", exc)
