"""The web tier's Flask configuration, derived from Sieve's settings (`sieve.config`).

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

from sieve.config import Settings

log = logging.getLogger(__name__)

MIN_SECRET_KEY_LENGTH = 32
MIN_SECRET_KEY_BITS = 90  # estimated from how often each character occurs in the key
MIN_DISTINCT_CHARACTERS = 10


def flask_config(settings: Settings) -> dict:
    """The Flask configuration the settings ask for (`create_app` adds its test_config)."""
    secure = settings.session_cookie_secure
    return {
        "SIEVE_ENV": settings.env,
        "SECRET_KEY": settings.secret_key,
        "SECRET_KEY_FILE": settings.secret_key_file,
        "MAX_CONTENT_LENGTH": int(settings.max_upload_mb * 1024 * 1024),
        "MAX_FILES_PER_UPLOAD": settings.max_files_per_upload,
        "MAX_PIXELS_PER_REQUEST": settings.max_pixels_per_request,
        "HISTORY_PAGE_SIZE": settings.history_page_size,
        "LOGIN_MAX_FAILURES": settings.login_max_failures,
        "LOGIN_MAX_FAILURES_PER_ADDRESS": settings.login_max_failures_per_address,
        "LOGIN_LOCKOUT_MAX_SECONDS": settings.login_lockout_max_seconds,
        "TRUSTED_PROXIES": settings.trusted_proxies,
        "METRICS_TOKEN": settings.metrics_token,
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        # Secure cookies (sent over HTTPS only) by default in production.
        "SESSION_COOKIE_SECURE": settings.production if secure is None else secure,
        "WTF_CSRF_TIME_LIMIT": None,  # the token lives as long as the session
        # The JSON API (web/api) and both event streams.
        "SIEVE_RATE_LIMIT": settings.rate_limit,
        "SIEVE_MAX_QUEUE_DEPTH": settings.max_queue_depth,
        "SIEVE_BACKPRESSURE_RETRY_AFTER": settings.backpressure_retry_after,
        "SIEVE_MAX_IMAGES": settings.max_images,
        "SIEVE_MAX_IMAGE_BYTES": settings.max_image_bytes,
        "SIEVE_POLL_AFTER": settings.poll_after,
        "SIEVE_MAX_WAIT_SECONDS": settings.max_wait_seconds,
        "SIEVE_SSE_KEEPALIVE_SECONDS": settings.sse_keepalive_seconds,
        "SIEVE_SSE_MAX_SECONDS": settings.sse_max_seconds,
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
