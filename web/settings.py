"""The web tier's settings: from the environment (and `.env`), each with a default.

In production (`SIEVE_ENV=production`) the app refuses to start without a SECRET_KEY of
its own, of at least 32 random-looking bytes. In development without one it uses a
random key made once per checkout and kept in `var/secret-key` (git-ignored), so that
nobody can sign a session cookie with a key they could read.
"""

import logging
import math
import os
import secrets
from collections import Counter
from pathlib import Path

from flask import Flask

from sieve.config import ROOT, load_settings
from sieve.config import _float as _number

log = logging.getLogger(__name__)

DEV_SECRET_KEY_FILE = ROOT / "var" / "secret-key"
MIN_SECRET_KEY_LENGTH = 32
MIN_SECRET_KEY_BITS = 90  # estimated from how often each character occurs in the key
MIN_DISTINCT_CHARACTERS = 10


def from_environment() -> dict:
    """The Flask configuration that the environment asks for."""
    load_settings()  # .env, without overriding the environment
    return {
        "SIEVE_ENV": os.environ.get("SIEVE_ENV", "development"),
        "SECRET_KEY": os.environ.get("SECRET_KEY") or None,
        "SECRET_KEY_FILE": os.environ.get("SIEVE_SECRET_KEY_FILE") or DEV_SECRET_KEY_FILE,
        "MAX_CONTENT_LENGTH": int(_number("MAX_UPLOAD_MB", 10) * 1024 * 1024),
        "MAX_FILES_PER_UPLOAD": int(_number("SIEVE_MAX_FILES_PER_UPLOAD", 10)),
        "MAX_PIXELS_PER_REQUEST": int(_number("SIEVE_MAX_PIXELS_PER_REQUEST", 200_000_000)),
        "HISTORY_PAGE_SIZE": int(_number("SIEVE_HISTORY_PAGE_SIZE", 20)),
        "LOGIN_MAX_FAILURES": int(_number("SIEVE_LOGIN_MAX_FAILURES", 5)),
        "LOGIN_MAX_FAILURES_PER_ADDRESS": int(_number("SIEVE_LOGIN_MAX_FAILURES_PER_ADDRESS",
                                                      50)),
        "LOGIN_LOCKOUT_MAX_SECONDS": int(_number("SIEVE_LOGIN_LOCKOUT_MAX_SECONDS", 900)),
        "TRUSTED_PROXIES": int(_number("SIEVE_TRUSTED_PROXIES", 0)),
        "METRICS_TOKEN": os.environ.get("SIEVE_METRICS_TOKEN") or None,
        "SSE_KEEPALIVE_SECONDS": _number("SIEVE_SSE_KEEPALIVE_SECONDS", 15),
        "SSE_MAX_SECONDS": _number("SIEVE_SSE_MAX_SECONDS", 300),
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        # Secure cookies (sent over HTTPS only) by default in production.
        "SESSION_COOKIE_SECURE": os.environ.get(
            "SESSION_COOKIE_SECURE",
            "1" if os.environ.get("SIEVE_ENV") == "production" else "") == "1",
        "WTF_CSRF_TIME_LIMIT": None,  # the token lives as long as the session
    }


def key_problem(key: str | None) -> str | None:
    """Why a secret key is too weak to sign sessions with, or None when it will do."""
    if not key:
        return "SECRET_KEY is not set"
    if len(key) < MIN_SECRET_KEY_LENGTH:
        return f"SECRET_KEY has {len(key)} characters; at least {MIN_SECRET_KEY_LENGTH}"
    counts = Counter(key)
    per_char = -sum(n / len(key) * math.log2(n / len(key)) for n in counts.values())
    if per_char * len(key) < MIN_SECRET_KEY_BITS or len(counts) < MIN_DISTINCT_CHARACTERS:
        return "SECRET_KEY does not look random (too few distinct characters)"
    return None


def development_key(path: Path) -> str:
    """The checkout's own random key: read from `path`, made there the first time."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        # O_EXCL: of several processes starting at once, one writes and all read it.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "w") as file:
            file.write(secrets.token_hex(32))
        log.warning("SECRET_KEY is not set: made a random development key in %s", path)
    key = path.read_text().strip()
    if key_problem(key):  # empty (a writer still at work) or edited by hand
        raise RuntimeError(f"{path} does not hold a usable key: delete it and start again")
    return key


def check(app: Flask) -> None:
    """Refuse to run in production without a strong secret key; in development without
    one, use the checkout's random key and say so."""
    key = app.config.get("SECRET_KEY")
    production = app.config["SIEVE_ENV"] == "production" and not app.testing
    problem = key_problem(key)
    if production and problem:
        raise RuntimeError(
            f"SECRET_KEY must be set to a random string of at least {MIN_SECRET_KEY_LENGTH} "
            f"characters when SIEVE_ENV=production ({problem}), e.g. "
            "SECRET_KEY=$(python -c 'import secrets; print(secrets.token_hex(32))')")
    if not key:
        path = app.config["SECRET_KEY_FILE"]
        app.config["SECRET_KEY"] = development_key(path)
        log.warning("SECRET_KEY is not set: sessions are signed with the random key kept "
                    "in %s. Set SECRET_KEY (and SIEVE_ENV=production) in production.", path)
