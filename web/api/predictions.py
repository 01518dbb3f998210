"""Predictions: submit images, read one or a page of them, cancel one."""

import time

import sqlalchemy.exc
from flask import Response, current_app, g, json, request, url_for

from sieve.models import CANCELLED, FINAL_STATES, STATES, UNFINISHED, describe
from web.api import bp
from web.api.errors import fail
from web.api.limits import check_backpressure
from web.api.tokens import PREDICT, require_token
from web.api.uploads import fingerprint, read_uploads
from web.api.webhooks import read_webhook
from web.services import services
from workers.client import QueueUnavailable, submit_many

MOST_IDS = 100  # predictions named in one GET /predictions?id=...


def present(data: dict) -> dict:
    """A prediction as the API shows it: its fields and the URLs to follow it."""
    data = {key: value for key, value in data.items() if key != "event_id"}
    pid = data["id"]
    data["links"] = {"self": url_for("api.get_prediction", prediction_id=pid),
                     "events": url_for("api.prediction_events", prediction_id=pid),
                     "cancel": url_for("api.cancel_prediction", prediction_id=pid)}
    return data


def owned_prediction(prediction_id: str):
    """The token owner's prediction; 404 for anyone else's (its existence is not told)."""
    prediction = services().db.get_prediction(prediction_id)
    if prediction is None or prediction.user_id != g.api_user.id:
        fail(404, f"no prediction {prediction_id}")
    return prediction


def _accepted(body: dict, status: int = 202) -> Response:
    """The answer to a submission: 202 while its predictions run (with when to poll), 201
    once all of them are final; Location of the first prediction."""
    headers = {"Location": body["items"][0]["links"]["self"]}
    if status == 202:
        headers["Retry-After"] = str(current_app.config["SIEVE_POLL_AFTER"])
    return Response(json.dumps(body), status=status, content_type="application/json",
                    headers=headers)


def _idempotency_key() -> str | None:
    """The Idempotency-Key header, checked; None without one."""
    key = request.headers.get("Idempotency-Key")
    if key is not None and not 1 <= len(key) <= 255:
        fail(400, "the Idempotency-Key must be 1 to 255 characters")
    return key


@bp.post("/predictions")
@require_token(PREDICT)
def create_predictions():
    """Store and enqueue one or more images; 202 with the new predictions. With
    `?wait=SECONDS`, answered once all of them are final (201), or when the seconds have
    passed (202), whichever comes first: submit and read the result in one request."""
    key = _idempotency_key()
    seconds = _wait_seconds()
    uploads, pipeline = read_uploads()
    webhook = read_webhook()
    db, user_id = services().db, g.api_user.id
    if key is not None:
        held = db.claim_idempotency_key(user_id, key, fingerprint(uploads, pipeline, webhook))
        if held is not None:
            return _replay(held, fingerprint(uploads, pipeline, webhook))
    try:
        check_backpressure()  # one message, however many images
        created = submit_many(services().celery, db,
                              [(u.data, u.content_type, u.filename) for u in uploads],
                              pipeline, user_id, g.get("request_id"), webhook)
    except QueueUnavailable as exc:
        if key is not None:
            db.release_idempotency_key(user_id, key)
        fail(503, str(exc), {"Retry-After": "5"})
    except BaseException:
        if key is not None:
            db.release_idempotency_key(user_id, key)
        raise
    body = {"items": [present(describe(p)) for p in created]}
    if key is not None:
        db.finish_idempotent_request(user_id, key, 202, body)
    if seconds <= 0:
        return _accepted(body)
    ids = [p.id for p in created]
    try:
        found = _until_final(ids, seconds, lambda: _owned_in_order(db, user_id, ids))
    except sqlalchemy.exc.OperationalError:
        # The predictions are stored and queued: say so, rather than an error the client
        # could take for a failed submission. It follows them as without `wait`.
        return _accepted(body)
    final = all(d["state"] in FINAL_STATES for d in found)
    return _accepted({"items": [present(d) for d in found]}, 201 if final else 202)


def _replay(held, expected: str) -> Response:
    """The stored first answer to a key, or why it cannot be replayed (409, 422)."""
    if held.fingerprint != expected:
        fail(422, "this Idempotency-Key was used with a different request: use a new key")
    if held.status == 0:
        fail(409, "a request with this Idempotency-Key is still being processed",
             {"Retry-After": "1"})
    response = _accepted(held.response)
    response.headers["Idempotent-Replayed"] = "true"
    return response


@bp.get("/predictions")
@require_token(PREDICT)
def list_predictions():
    """The token owner's predictions, newest first, a page at a time; or, with `id`
    (repeated), those predictions, and with `wait` once all of them are final."""
    if "id" in request.args:
        return _chosen_predictions(request.args.getlist("id"))
    if "wait" in request.args:
        fail(400, "wait needs the predictions to wait for: name them with id")
    state = request.args.get("state")
    if state is not None and state not in STATES:
        fail(400, f"unknown state {state!r}: choose one of {', '.join(STATES)}")
    try:
        limit = int(request.args.get("limit", 20))
    except ValueError:
        fail(400, "limit must be a whole number from 1 to 100")
    if not 1 <= limit <= 100:
        fail(400, "limit must be a whole number from 1 to 100")
    cursor = request.args.get("cursor") or None
    page = services().db.user_predictions(g.api_user.id, state, limit + 1, cursor)
    if page is None:
        fail(400, "the cursor is not valid: use the next_cursor of a previous page")
    more = len(page) > limit
    items = [present(describe(p)) for p in page[:limit]]
    return {"items": items, "next_cursor": items[-1]["id"] if more else None}


def _chosen_predictions(ids: list[str]) -> dict:
    """The predictions named by `id`, in that order (all the owner's, or 404), after
    waiting for all of them to be final when `wait` asks for it."""
    if not 1 <= len(ids) <= MOST_IDS:
        fail(400, f"name 1 to {MOST_IDS} predictions with id")
    if {"state", "limit", "cursor"} & set(request.args):
        fail(400, "id cannot be combined with state, limit or cursor")
    seconds = _wait_seconds()
    db, user_id = services().db, g.api_user.id

    found = (_until_final(ids, seconds, lambda: _owned_in_order(db, user_id, ids))
             if seconds > 0 else [describe(p) for p in _owned_in_order(db, user_id, ids)])
    return {"items": [present(d) for d in found], "next_cursor": None}


def _owned_in_order(db, user_id: int, ids: list[str]) -> list:
    """The user's predictions named by `ids`, in that order; 404 when one is not theirs."""
    found = db.user_predictions_by_id(user_id, ids)
    if len(found) < len(set(ids)):
        missing = next(pid for pid in ids if pid not in {p.id for p in found})
        fail(404, f"no prediction {missing}")
    by_id = {p.id: p for p in found}
    return [by_id[pid] for pid in ids]


@bp.get("/predictions/<prediction_id>")
@require_token(PREDICT)
def get_prediction(prediction_id: str):
    """One of the token owner's predictions; with `?wait=SECONDS`, answered as soon as it
    is final or when the seconds have passed (a long poll), whichever comes first."""
    seconds = _wait_seconds()
    prediction = owned_prediction(prediction_id)
    if seconds > 0 and not prediction.final:
        return present(_until_final([prediction_id], seconds,
                                    lambda: [services().db.get_prediction(prediction_id)])[0])
    return present(describe(prediction))


def _wait_seconds() -> float:
    """The `wait` query parameter: 0 (answer at once) to SIEVE_MAX_WAIT_SECONDS."""
    raw = request.args.get("wait")
    if raw is None:
        return 0.0
    most = current_app.config["SIEVE_MAX_WAIT_SECONDS"]
    try:
        seconds = float(raw)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds <= most:  # also false for nan
        fail(400, f"wait must be a number of seconds from 0 to {most:g}")
    return seconds


def _until_final(prediction_ids: list[str], seconds: float, read) -> list[dict]:
    """The predictions (as `describe` shows them) once all of them are final, or after
    `seconds`. `read()` reads them from the database: once after following their events,
    so that no change slips between, and again every second, since a published event can
    be lost. In between, the events themselves carry each change (they hold the
    prediction's fields as recorded), and no request reads the database for them."""
    svc = services()
    deadline = time.monotonic() + seconds
    with svc.listener.follow(*prediction_ids) as following:
        latest = {p.id: describe(p) for p in read()}
        read_at = time.monotonic()
        while True:
            now = time.monotonic()
            if now >= deadline or all(d["state"] in FINAL_STATES for d in latest.values()):
                return [latest[pid] for pid in prediction_ids]
            if now - read_at >= 1.0:
                latest, read_at = {p.id: describe(p) for p in read()}, now
                continue
            for event in following.wait(min(read_at + 1.0, deadline) - now):
                # Events of one prediction may arrive late, never after its final one.
                if latest[event["id"]]["state"] not in FINAL_STATES:
                    latest[event["id"]] = event


@bp.post("/predictions/<prediction_id>/cancel")
@require_token(PREDICT)
def cancel_prediction(prediction_id: str):
    """Cancel a prediction that has not finished; 409 when it already has."""
    owned_prediction(prediction_id)
    event = services().db.transition(prediction_id, CANCELLED, UNFINISHED,
                                     reason="cancelled by its owner")
    if event is None:
        now = services().db.get_prediction(prediction_id)
        fail(409, f"the prediction is already {now.state}", state=now.state)
    services().events.publish(event)
    return present(event)
