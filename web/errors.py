"""Error pages a person can act on (JSON for the API's paths)."""

from flask import Flask, current_app, render_template, request
from flask_wtf.csrf import CSRFError
from sqlalchemy.exc import OperationalError
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from web.api.errors import DATABASE_RETRY_AFTER, as_problem, database_unavailable, problem
from workers.client import QueueUnavailable


def _answer(status: int, title: str, message: str):
    """The error as a page, or as problem details (the API's error shape) under /api/."""
    if request.path.startswith("/api/"):
        return problem(status, message)
    return render_template("error.html", status=status, title=title, message=message), status


def too_large(_error: RequestEntityTooLarge):
    """413: the upload is over MAX_UPLOAD_MB, or its form has too many parts (or a field
    too large) for the form parser's limits; the message says which."""
    most = current_app.config["MAX_CONTENT_LENGTH"]
    if most is not None and (request.content_length is None
                             or request.content_length > most):
        return _answer(413, "Upload too large",
                       f"The upload is larger than {most / (1024 * 1024):g} MB, the most "
                       "this service accepts at once. Send smaller images, or fewer at a "
                       "time.")
    return _answer(413, "Too many parts",
                   f"The form has more than {request.max_form_parts} parts, or a field "
                   "larger than the form parser accepts. Send fewer files or fields at a "
                   "time.")


def bad_csrf(error: CSRFError):
    """400: the form's CSRF token is missing, wrong or from another session."""
    return _answer(400, "The form expired",
                   f"{error.description} Go back, reload the page and send the form again.")


def queue_unavailable(_error: QueueUnavailable):
    """503: Redis did not take the prediction."""
    body, status = _answer(503, "The models are unreachable",
                           "The task queue did not answer, so your image was not sent to the "
                           "models. Please try again in a minute.")
    return body, status, {"Retry-After": "30"}


def database_down(error: OperationalError):
    """503: the database did not answer (problem details under /api/)."""
    if request.path.startswith("/api/"):
        return database_unavailable(error)
    body, status = _answer(503, "The service is briefly unavailable",
                           "The database did not answer, so your request was not "
                           "completed. Please try again in a few seconds.")
    return body, status, {"Retry-After": DATABASE_RETRY_AFTER}


def http_error(error: HTTPException):
    """Any other HTTP error, with its description (problem details under /api/)."""
    if request.path.startswith("/api/"):
        return as_problem(error)
    return _answer(error.code or 500, error.name, error.description or "")


def init_app(app: Flask) -> None:
    """Register the handlers."""
    app.register_error_handler(RequestEntityTooLarge, too_large)
    app.register_error_handler(CSRFError, bad_csrf)
    app.register_error_handler(QueueUnavailable, queue_unavailable)
    app.register_error_handler(OperationalError, database_down)
    app.register_error_handler(HTTPException, http_error)
