"""A prediction's webhook and its deliveries, with every attempt (see sieve/webhooks.py)."""

from sieve.database import Deliveries
from web.api import bp
from web.api.predictions import owned_prediction
from web.api.tokens import PREDICT, require_token
from web.services import services


@bp.get("/predictions/<prediction_id>/webhook")
@require_token(PREDICT)
def prediction_webhook(prediction_id: str):
    """The prediction's webhook and its deliveries, each with its attempts (time, outcome,
    response code; the answers' bodies are not kept)."""
    prediction = owned_prediction(prediction_id)
    deliveries = (Deliveries(services().db).for_prediction(prediction_id)
                  if prediction.webhook_url else [])
    return {"url": prediction.webhook_url, "events": prediction.webhook_events,
            "deliveries": deliveries}
