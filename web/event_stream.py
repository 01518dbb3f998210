"""A prediction's state changes as Server-Sent Events: the one stream of the pages and the API.

Each event carries its number from the database (`id:`), so a client that reconnects with
Last-Event-ID gets exactly the changes it missed: the stream follows the prediction first
(through the process's `Listener`), then replays the recorded events after that number,
then relays live ones. It reads the record again after the listener lost its subscription
(Redis restarting) and before each keep-alive comment. It ends after the final state, or
after SIEVE_SSE_MAX_SECONDS (the client reconnects and resumes). The page's stream is here;
the API's (`web/api/events.py`) sends the same events in the API's shape.
"""

import json
import logging
import time
from collections.abc import Callable, Iterator

from flask import Blueprint, Response, abort, current_app, request

from sieve.database import LARGEST_INTEGER
from sieve.models import FINAL_STATES
from web.pages import own_prediction
from web.services import WebServices, services
from web.users import current_user, login_required

bp = Blueprint("events", __name__)
log = logging.getLogger(__name__)


def last_event_id() -> int:
    """Where to resume: the Last-Event-ID header (or ?last_event_id=, or ?after=), else 0;
    400 when it is not an event number."""
    raw = (request.headers.get("Last-Event-ID") or request.args.get("last_event_id")
           or request.args.get("after") or "0")
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if not 0 <= value <= LARGEST_INTEGER:
        abort(400, f"Last-Event-ID {raw[:40]!r} is not an event number from 0 to "
              f"{LARGEST_INTEGER}.")
    return value


def stream(svc: WebServices, prediction_id: str, after: int, final: bool,
           message: Callable[[dict], str], keepalive: float, limit: float) -> Iterator[str]:
    """The events after `after` as `message`s, then live ones, until a final state (at
    once when the prediction was `final` already) or for `limit` seconds."""
    with svc.listener.follow(prediction_id) as following:
        yield "retry: 2000\n\n"
        events = svc.db.events(prediction_id, after)
        started = last_sent = time.monotonic()
        while True:
            for event in events:
                if event["event_id"] > after:
                    after, last_sent = event["event_id"], time.monotonic()
                    yield message(event)
                    if event["state"] in FINAL_STATES:
                        return
            if final or time.monotonic() - started >= limit:
                return
            if time.monotonic() - last_sent >= keepalive:
                last_sent = time.monotonic()
                yield ": keep-alive\n\n"
            events = following.wait(min(1.0, keepalive))
            if not events and (following.may_have_missed()
                               or time.monotonic() - last_sent >= keepalive):
                # Published events are lost while Redis restarts: after that, and before
                # each keep-alive, the record says what came.
                events = svc.db.events(prediction_id, after)


def event_stream(body: Iterator[str]) -> Response:
    """A streamed text/event-stream response that no proxy buffers or caches."""
    return Response(body, mimetype="text/event-stream",
                    headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def state_message(event: dict) -> str:
    """One event as the page reads it: type `state`, the event itself as data."""
    return f"id: {event['event_id']}\nevent: state\ndata: {json.dumps(event)}\n\n"


@bp.route("/predictions/<prediction_id>/events")
@login_required
def prediction_events(prediction_id: str):
    """The event stream of one of the user's predictions."""
    prediction = own_prediction(prediction_id)
    config = current_app.config
    log.info("user %s follows prediction %s", current_user().id, prediction_id)
    return event_stream(stream(services(), prediction_id, last_event_id(), prediction.final,
                               state_message, config["SIEVE_SSE_KEEPALIVE_SECONDS"],
                               config["SIEVE_SSE_MAX_SECONDS"]))
