"""A prediction's state changes as Server-Sent Events, resumable with Last-Event-ID.

The database's numbered events are the record; Redis pub/sub only wakes the stream up
early. The stream sends every event after the client's last one, a comment now and then
to keep proxies from closing it, and ends after the final state (or after
SIEVE_SSE_MAX_SECONDS, when the client reconnects with its Last-Event-ID).
"""

import time
from collections.abc import Iterator

from flask import Response, current_app, json, request

from sieve.database import LARGEST_INTEGER
from sieve.models import FINAL_STATES
from web.api import bp
from web.api.errors import fail
from web.api.predictions import owned_prediction, present
from web.api.tokens import PREDICT, require_token
from web.services import Services, services


def format_event(event: dict, data: dict) -> str:
    """One SSE message: the event number as its id, the state as its type."""
    return f"id: {event['event_id']}\nevent: {event['state']}\ndata: {json.dumps(data)}\n\n"


def _last_event_id() -> int:
    """Where to resume: the Last-Event-ID header (or ?last_event_id=), else 0."""
    raw = request.headers.get("Last-Event-ID") or request.args.get("last_event_id") or "0"
    try:
        value = int(raw)
    except ValueError:
        fail(400, f"Last-Event-ID {raw!r} is not an event number")
    if not 0 <= value <= LARGEST_INTEGER:
        fail(400, f"Last-Event-ID must be an event number from 0 to {LARGEST_INTEGER}")
    return value


@bp.get("/predictions/<prediction_id>/events")
@require_token(PREDICT)
def prediction_events(prediction_id: str):
    """Stream the prediction's events after Last-Event-ID, until its final state."""
    prediction = owned_prediction(prediction_id)
    after = _last_event_id()
    config = current_app.config
    # URLs are built now: the stream runs after the request context has gone.
    events = services().db.events(prediction_id, after)
    stream = _stream(services(), prediction_id, after, events, prediction.final,
                     config["SIEVE_SSE_KEEPALIVE_SECONDS"], config["SIEVE_SSE_MAX_SECONDS"],
                     present({"id": prediction_id})["links"])
    return Response(stream, content_type="text/event-stream",
                    headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def _stream(svc: Services, prediction_id: str, after: int, first: list[dict], final: bool,
            keepalive: float, max_seconds: float, links: dict) -> Iterator[str]:
    """The event stream: what is recorded after `after`, then changes as they come."""
    # Followed before the record is read again, so that no change slips between.
    with svc.listener.follow(prediction_id) as following:
        yield "retry: 2000\n\n"
        pending, last = first, after
        deadline = time.monotonic() + max_seconds
        quiet_since = time.monotonic()
        while True:
            for event in pending:
                data = {key: value for key, value in event.items() if key != "event_id"}
                yield format_event(event, {**data, "links": links})
                last = event["event_id"]
                if event["state"] in FINAL_STATES:
                    return
            if final or time.monotonic() > deadline:
                return
            if time.monotonic() - quiet_since >= keepalive:
                yield ": keep-alive\n\n"
                quiet_since = time.monotonic()
            following.wait(min(1.0, keepalive))
            pending = svc.db.events(prediction_id, last)
            if pending:
                quiet_since = time.monotonic()

