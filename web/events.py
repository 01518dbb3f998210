"""A prediction's state changes as Server-Sent Events, pushed from Redis pub/sub.

Each event carries its number from the database (`id:`), so a browser that reconnects
with Last-Event-ID gets exactly the changes it missed: the stream follows the prediction
first (through the process's `Listener`), then replays the recorded events after that
number, then relays live ones. It reads the record again after the listener lost its
subscription (Redis restarting) and before each keep-alive. It ends after the
final state, or after SIEVE_SSE_MAX_SECONDS (the browser reconnects and resumes).
"""

import json
import logging
import time

from flask import Blueprint, Response, abort, current_app, request

from sieve.database import LARGEST_INTEGER
from sieve.models import FINAL_STATES
from web.accounts import current_user, login_required
from web.pages import own_prediction
from web.services import services

bp = Blueprint("events", __name__)
log = logging.getLogger(__name__)


def format_event(event: dict) -> str:
    """One event in the text/event-stream format."""
    return f"id: {event['event_id']}\nevent: state\ndata: {json.dumps(event)}\n\n"


def last_event_id() -> int:
    """The number of the last event the client has (Last-Event-ID, or ?after=); 400 when
    it is not an event number."""
    raw = request.headers.get("Last-Event-ID") or request.args.get("after") or "0"
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if not 0 <= value <= LARGEST_INTEGER:
        abort(400, f"Last-Event-ID (or after) must be an event number from 0 to "
              f"{LARGEST_INTEGER}.")
    return value


def stream(listener, db, prediction_id: str, after: int, keepalive: float, limit: float):
    """Yield the recorded events after `after`, then live ones, until a final state."""
    with listener.follow(prediction_id) as following:
        yield "retry: 2000\n\n"
        for event in db.events(prediction_id, after):
            after = event["event_id"]
            yield format_event(event)
            if event["state"] in FINAL_STATES:
                return
        started = last_sent = time.monotonic()
        while time.monotonic() - started < limit:
            events = following.wait(1.0)
            if not events and (following.may_have_missed()
                               or time.monotonic() - last_sent >= keepalive):
                # Published events are lost while Redis restarts: after that, and before
                # each keep-alive, the record says what came.
                events = db.events(prediction_id, after)
            for event in events:
                if event["event_id"] > after:
                    after = event["event_id"]
                    last_sent = time.monotonic()
                    yield format_event(event)
                    if event["state"] in FINAL_STATES:
                        return
            if time.monotonic() - last_sent >= keepalive:
                last_sent = time.monotonic()
                yield ": keepalive\n\n"


@bp.route("/predictions/<prediction_id>/events")
@login_required
def prediction_events(prediction_id: str):
    """The event stream of one of the user's predictions."""
    own_prediction(prediction_id)
    current = services()
    config = current_app.config
    log.info("user %s follows prediction %s", current_user().id, prediction_id)
    body = stream(current.listener, current.db, prediction_id, last_event_id(),
                  config["SIEVE_SSE_KEEPALIVE_SECONDS"], config["SIEVE_SSE_MAX_SECONDS"])
    return Response(body, mimetype="text/event-stream",
                    headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
