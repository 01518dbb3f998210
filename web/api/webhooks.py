"""The webhook a submission names, checked before anything is stored. What is posted, how
it is signed and which URLs are allowed is in sieve/webhooks.py; the webhooks worker
(workers/webhooks.py) posts them; web/api/deliveries.py reads the deliveries back."""

from flask import g, request

from sieve import webhooks
from web.api.errors import fail
from web.services import services


def read_webhook() -> dict | None:
    """The submission's webhook (form fields `webhook` and `webhook_events`), checked:
    None without one; 422 when the URL may not be used or the events are unknown."""
    url = request.form.get("webhook", "").strip()
    events = request.form.get("webhook_events")
    if not url:
        if events is not None:
            fail(422, "webhook_events needs a webhook: name its URL in the field `webhook`")
        return None
    events = events or webhooks.FINAL
    if events not in webhooks.EVENT_CHOICES:
        fail(422, f"unknown webhook_events {events!r}: choose one of "
             f"{', '.join(webhooks.EVENT_CHOICES)}")
    if not g.api_token.webhook_secret:
        fail(422, "this token has no webhook signing secret (it was made before webhooks "
             "existed): make a new token, which comes with its secret")
    try:
        webhooks.check(url, webhooks.AllowList(services().settings.webhook_allow_hosts))
    except webhooks.WebhookRefused as exc:
        fail(422, str(exc))
    return {"url": url, "events": events, "token_id": g.api_token.id}
