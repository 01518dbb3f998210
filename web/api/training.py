"""Training runs: submit, list, follow and cancel them. Every call needs a token with the
`train` scope whose user is an administrator."""

from flask import Response, g, request, url_for

from sieve.models import QUEUED
from web.api import bp
from web.api.errors import fail
from web.api.tokens import TRAIN, require_admin, require_token
from web.services import services
from workers.client import QueueUnavailable
from workers.runs import (
    InvalidParameters,
    cancel_run,
    get_run,
    list_runs,
    no_worker_warning,
    run_log,
    submit_run,
)


def json_body() -> dict:
    """The request's JSON object (an empty body counts as {}); 415 or 400 otherwise."""
    if not request.get_data():
        return {}
    if not request.is_json:
        fail(415, "send the parameters as application/json")
    try:
        body = request.get_json(silent=True)
    except RecursionError:  # the JSON decoder recurses once per level of nesting
        fail(400, "the JSON body is nested too deeply")
    if not isinstance(body, dict):
        fail(400, "the body must be a JSON object")
    return body


def with_warning(run) -> dict:
    """A run as JSON; a queued one says so when no worker listens on the training queue."""
    data = run.to_dict()
    if run.state == QUEUED:
        warning = no_worker_warning(services().celery)
        if warning:
            data["warning"] = warning
    return data


def _run(run_id: str):
    """A training run, or 404."""
    run = get_run(services().db, run_id, services().settings.training_stale_after)
    if run is None:
        fail(404, f"no training run {run_id}")
    return run


@bp.post("/training-runs")
@require_token(TRAIN)
def create_training_run():
    """Submit a training run; 202 with the run and where to follow it."""
    require_admin()
    try:
        run = submit_run(services().celery, services().db, json_body(), g.api_user.id)
    except InvalidParameters as exc:
        fail(422, str(exc))
    except QueueUnavailable as exc:
        fail(503, str(exc), {"Retry-After": "5"})
    location = url_for("api.get_training_run", run_id=run.id)
    return with_warning(run), 202, {"Location": location, "Retry-After": "5"}


@bp.get("/training-runs")
@require_token(TRAIN)
def list_training_runs():
    """The newest training runs (all users'), at most 50."""
    require_admin()
    runs = list_runs(services().db, 50, None, services().settings.training_stale_after)
    return {"items": [run.to_dict() for run in runs]}


@bp.get("/training-runs/<run_id>")
@require_token(TRAIN)
def get_training_run(run_id: str):
    """One training run: state, progress, curve, outcome."""
    require_admin()
    return with_warning(_run(run_id))


@bp.get("/training-runs/<run_id>/log")
@require_token(TRAIN)
def training_run_log(run_id: str):
    """A run's log so far, as plain text."""
    require_admin()
    text = run_log(services().db, run_id)
    if text is None:
        fail(404, f"no training run {run_id}")
    return Response(text, content_type="text/plain; charset=utf-8")


@bp.post("/training-runs/<run_id>/cancel")
@require_token(TRAIN)
def cancel_training_run(run_id: str):
    """Cancel a run (a running one stops within a step); 409 when it has already ended."""
    require_admin()
    if _run(run_id).final:
        fail(409, f"the training run has already ended: {_run(run_id).state}")
    return cancel_run(services().celery, services().db, run_id).to_dict()
