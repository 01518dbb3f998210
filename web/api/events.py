"""A prediction's state changes as Server-Sent Events, resumable with Last-Event-ID.

The stream is the web tier's one (`web/event_stream.py`): the database's numbered events
are the record, Redis pub/sub wakes the stream up early. Here each event's type is its
state and its data the prediction as the API shows it, with its links.
"""

from flask import current_app, json

from web.api import bp
from web.api.predictions import owned_prediction, present
from web.api.tokens import PREDICT, require_token
from web.event_stream import event_stream, last_event_id, stream
from web.services import services


@bp.get("/predictions/<prediction_id>/events")
@require_token(PREDICT)
def prediction_events(prediction_id: str):
    """Stream the prediction's events after Last-Event-ID, until its final state."""
    prediction = owned_prediction(prediction_id)
    config = current_app.config
    # URLs are built now: the stream runs after the request context has gone.
    links = present({"id": prediction_id})["links"]

    def message(event: dict) -> str:
        """One SSE message: the event number as its id, the state as its type."""
        data = {key: value for key, value in event.items() if key != "event_id"}
        return (f"id: {event['event_id']}\nevent: {event['state']}\n"
                f"data: {json.dumps({**data, 'links': links})}\n\n")

    return event_stream(stream(services(), prediction_id, last_event_id(), prediction.final,
                               message, config["SIEVE_SSE_KEEPALIVE_SECONDS"],
                               config["SIEVE_SSE_MAX_SECONDS"]))
