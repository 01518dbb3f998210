"""One JSON line per request, with a request id that follows the work to the workers.

The id comes from the client's X-Request-ID header when it is a sane token, otherwise
it is made here; it is sent back in X-Request-ID, stored on every prediction the request
creates and carried to the workers in the task headers. Only the method, path, status,
timing and user id are logged: never form fields, passwords or image bytes.
"""

import json
import logging
import re
import sys
import time
import uuid

from flask import Flask, g, request

from web.users import current_user

log = logging.getLogger("sieve.web.requests")

REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


def request_id() -> str:
    """The client's X-Request-ID when it is usable, otherwise a new one."""
    given = request.headers.get("X-Request-ID", "")
    return given if REQUEST_ID.match(given) else uuid.uuid4().hex


def _start() -> None:
    """Note when the request began and which id it goes by."""
    g.request_id = request_id()
    g.request_started = time.perf_counter()


def _finish(response):
    """Log the request in one line and return its id to the client."""
    response.headers["X-Request-ID"] = g.get("request_id", "")
    # A page's signed-in user, or the owner of the API token the request came with.
    user = current_user() if "user" in g else g.get("api_user")
    line = {
        "event": "request", "request_id": g.get("request_id"), "method": request.method,
        "path": request.path, "status": response.status_code,
        "duration_ms": round((time.perf_counter() - g.get("request_started",
                                                           time.perf_counter())) * 1000, 1),
        "user_id": user.id if user else None, "remote_addr": request.remote_addr,
        "length": request.content_length,
    }
    log.info(json.dumps(line))
    return response


def init_app(app: Flask) -> None:
    """Log every request of the app; lines go to stderr unless logging is set up already."""
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False
    app.before_request(_start)
    app.after_request(_finish)
