"""The web tier's settings: from the environment (and `.env`), each with a default.

In production (`SIEVE_ENV=production`) the app refuses to start without a SECRET_KEY of
its own; in development it falls back to a fixed, public key and says so.
"""

import logging
import os

from flask import Flask

from sieve.config import _float as _number
from training.config import load_settings

log = logging.getLogger(__name__)

DEV_SECRET_KEY = "sieve-development-key-not-secret"
MIN_SECRET_KEY_LENGTH = 16


def from_environment() -> dict:
    """The Flask configuration that the environment asks for."""
    load_settings()  # .env, without overriding the environment
    return {
        "SIEVE_ENV": os.environ.get("SIEVE_ENV", "development"),
        "SECRET_KEY": os.environ.get("SECRET_KEY") or None,
        "MAX_CONTENT_LENGTH": int(_number("MAX_UPLOAD_MB", 10) * 1024 * 1024),
        "MAX_FILES_PER_UPLOAD": int(_number("SIEVE_MAX_FILES_PER_UPLOAD", 10)),
        "HISTORY_PAGE_SIZE": int(_number("SIEVE_HISTORY_PAGE_SIZE", 20)),
        "LOGIN_MAX_FAILURES": int(_number("SIEVE_LOGIN_MAX_FAILURES", 5)),
        "LOGIN_LOCKOUT_MAX_SECONDS": int(_number("SIEVE_LOGIN_LOCKOUT_MAX_SECONDS", 900)),
        "SSE_KEEPALIVE_SECONDS": _number("SIEVE_SSE_KEEPALIVE_SECONDS", 15),
        "SSE_MAX_SECONDS": _number("SIEVE_SSE_MAX_SECONDS", 300),
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "SESSION_COOKIE_SECURE": os.environ.get("SESSION_COOKIE_SECURE", "") == "1",
        "WTF_CSRF_TIME_LIMIT": None,  # the token lives as long as the session
    }


def check(app: Flask) -> None:
    """Refuse to run in production without a real secret key; warn in development."""
    key = app.config.get("SECRET_KEY")
    production = app.config["SIEVE_ENV"] == "production" and not app.testing
    if production and (not key or key == DEV_SECRET_KEY or len(key) < MIN_SECRET_KEY_LENGTH):
        raise RuntimeError(
            "SECRET_KEY must be set to a random string of at least "
            f"{MIN_SECRET_KEY_LENGTH} characters when SIEVE_ENV=production, e.g. "
            "SECRET_KEY=$(python -c 'import secrets; print(secrets.token_hex(32))')")
    if not key:
        log.warning("SECRET_KEY is not set: using the public development key; sessions "
                    "can be forged. Set SECRET_KEY (and SIEVE_ENV=production) in production.")
        app.config["SECRET_KEY"] = DEV_SECRET_KEY
