"""Errors of the JSON API as problem details (RFC 9457, `application/problem+json`).

Views raise them with `fail(status, detail)`; any other HTTP error under /api/ (an unknown
path, a wrong method, a crash) is turned into the same shape here. A database that does
not answer is a 503 with Retry-After, like a queue that does not: the client may retry.
"""

import logging

from flask import Flask, Response, json, request
from sqlalchemy.exc import OperationalError
from werkzeug.exceptions import HTTPException, InternalServerError, abort
from werkzeug.http import HTTP_STATUS_CODES

from web.api import bp

PROBLEM = "application/problem+json"
API_PREFIX = "/api/"
DATABASE_RETRY_AFTER = "5"  # seconds; a database restart or fail-over takes about that

log = logging.getLogger(__name__)


def problem(status: int, detail: str, headers: dict | None = None, **extra) -> Response:
    """A problem-details response: type, title, status, detail and any extra members."""
    body = {"type": "about:blank", "title": HTTP_STATUS_CODES.get(status, "Error"),
            "status": status, "detail": detail, **extra}
    return Response(json.dumps(body), status=status, headers=headers or {},
                    content_type=PROBLEM)


def fail(status: int, detail: str, headers: dict | None = None, **extra) -> None:
    """Stop the request with a problem-details response."""
    abort(problem(status, detail, headers, **extra))


def as_problem(exc: HTTPException) -> Response:
    """An HTTP error as problem details (one already in that shape is kept as it is)."""
    if exc.response is not None:
        return exc.response
    if isinstance(exc, InternalServerError):
        log.error("API request %s %s failed", request.method, request.path,
                  exc_info=exc.original_exception)
        return problem(500, "the server failed to answer; the error has been logged")
    headers = {k: v for k, v in exc.get_headers() if k.lower() != "content-type"}
    return problem(exc.code or 500, exc.description or "", headers)


def database_unavailable(exc: OperationalError) -> Response:
    """503 with Retry-After: the database did not answer (down, restarting, unreachable)."""
    log.warning("API request %s %s: the database is unreachable: %s", request.method,
                request.path, getattr(exc, "orig", None) or exc)
    return problem(503, "the database is unreachable and the request was not completed: "
                   f"retry in {DATABASE_RETRY_AFTER} s", {"Retry-After": DATABASE_RETRY_AFTER})


@bp.errorhandler(Exception)
def _view_errors(exc: Exception) -> Response:
    """Any error in an API view as problem details (a crash is logged, then a 500)."""
    if isinstance(exc, OperationalError):
        return database_unavailable(exc)
    if not isinstance(exc, HTTPException):
        exc = InternalServerError(original_exception=exc)
    return as_problem(exc)


def _api_errors(exc: HTTPException) -> Response | HTTPException:
    """Problem details for errors under /api/; other paths keep Flask's own pages."""
    if request.path.startswith(API_PREFIX):
        return as_problem(exc)
    return exc


def init_app(app: Flask) -> None:
    """Answer errors outside the API's views (routing: 404, 405) as problem details too."""
    app.register_error_handler(HTTPException, _api_errors)
