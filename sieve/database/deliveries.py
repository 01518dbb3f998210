"""`Deliveries`: the reads and writes of webhook deliveries and their attempts.

A delivery is recorded in the transaction of the state change it tells of
(`Database.transitions`), so none is lost. The webhooks worker claims the due ones
(`claim_due`), makes one attempt per claim and records it (`record`); a failed attempt
makes the delivery due again later. The API reads them back (`for_prediction`).
"""

from datetime import datetime, timedelta

from sqlalchemy import insert, select, update

from sieve import webhooks
from sieve.database.engine import Store
from sieve.models import (
    ApiToken,
    Prediction,
    PredictionEvent,
    WebhookAttempt,
    WebhookDelivery,
    iso,
    utcnow,
)

DELIVERIES = WebhookDelivery.__table__
ATTEMPTS = WebhookAttempt.__table__
EVENTS = PredictionEvent.__table__
PREDICTIONS = Prediction.__table__
TOKENS = ApiToken.__table__


class Deliveries:
    """Webhook deliveries in a Sieve database."""

    def __init__(self, db: Store):
        self.db = db

    def claim_due(self, lease: float, limit: int = 100) -> list[tuple[int, int]]:
        """(delivery id, attempts so far) of the pending deliveries that are due, each
        claimed for `lease` seconds: it is not due again before then, so that another
        webhooks worker does not take it too, and comes back if its attempt is lost."""
        now = utcnow()
        claimed = []
        with self.db.writing() as connection:
            due = connection.execute(
                select(DELIVERIES.c.id, DELIVERIES.c.attempts)
                .where(DELIVERIES.c.state == webhooks.PENDING,
                       DELIVERIES.c.next_attempt_at <= now)
                .order_by(DELIVERIES.c.next_attempt_at).limit(limit)).all()
            for delivery_id, attempts in due:
                if connection.execute(
                        update(DELIVERIES)
                        .where(DELIVERIES.c.id == delivery_id,
                               DELIVERIES.c.state == webhooks.PENDING,
                               DELIVERIES.c.attempts == attempts,
                               DELIVERIES.c.next_attempt_at <= now)
                        .values(next_attempt_at=now + timedelta(seconds=lease))).rowcount:
                    claimed.append((delivery_id, attempts))
        return claimed

    def job(self, delivery_id: int):
        """What one attempt needs, in one query: the delivery (url, state, attempts,
        created_at), its event (event_state, event_data, event_at) and the signing
        secret; None when there is no such delivery."""
        with self.db.engine.connect() as connection:
            return connection.execute(
                select(DELIVERIES.c.id, DELIVERIES.c.url, DELIVERIES.c.state,
                       DELIVERIES.c.attempts, DELIVERIES.c.created_at, DELIVERIES.c.event_id,
                       EVENTS.c.state.label("event_state"),
                       EVENTS.c.data.label("event_data"),
                       EVENTS.c.created_at.label("event_at"),
                       TOKENS.c.webhook_secret.label("secret"))
                .join(EVENTS, EVENTS.c.id == DELIVERIES.c.event_id)
                .join(PREDICTIONS, PREDICTIONS.c.id == DELIVERIES.c.prediction_id)
                .outerjoin(TOKENS, TOKENS.c.id == PREDICTIONS.c.webhook_token_id)
                .where(DELIVERIES.c.id == delivery_id)).first()

    def record(self, delivery_id: int, number: int, started_at: datetime, seconds: float,
               outcome: str, status_code: int | None, error: str | None, state: str,
               next_attempt_at: datetime | None) -> bool:
        """Record attempt `number` and what follows it: the delivery's new state and, while
        pending, when the next attempt is due. False (nothing written) when another
        attempt with this number was recorded first."""
        values = {"state": state, "attempts": number, "next_attempt_at": next_attempt_at}
        if state != webhooks.PENDING:
            values["finished_at"] = utcnow()
        with self.db.writing() as connection:
            if not connection.execute(
                    update(DELIVERIES)
                    .where(DELIVERIES.c.id == delivery_id, DELIVERIES.c.attempts == number - 1)
                    .values(**values)).rowcount:
                return False
            connection.execute(insert(ATTEMPTS).values(
                delivery_id=delivery_id, number=number, started_at=started_at,
                seconds=seconds, outcome=outcome, status_code=status_code,
                error=(error or None) and error[:255]))
        return True

    def for_prediction(self, prediction_id: str) -> list[dict]:
        """A prediction's deliveries, oldest first, each with its attempts."""
        with self.db.engine.connect() as connection:
            deliveries = connection.execute(
                select(DELIVERIES, EVENTS.c.state.label("event_state"))
                .join(EVENTS, EVENTS.c.id == DELIVERIES.c.event_id)
                .where(DELIVERIES.c.prediction_id == prediction_id)
                .order_by(DELIVERIES.c.id)).all()
            attempts = connection.execute(
                select(ATTEMPTS).where(ATTEMPTS.c.delivery_id.in_([d.id for d in deliveries]))
                .order_by(ATTEMPTS.c.delivery_id, ATTEMPTS.c.number)).all()
        by_delivery: dict[int, list[dict]] = {}
        for a in attempts:
            by_delivery.setdefault(a.delivery_id, []).append({
                "number": a.number, "at": iso(a.started_at), "seconds": round(a.seconds, 3),
                "outcome": a.outcome, "status_code": a.status_code, "error": a.error})
        return [{"webhook_id": str(d.event_id), "type": f"prediction.{d.event_state}",
                 "url": d.url, "state": d.state, "attempts": by_delivery.get(d.id, []),
                 "next_attempt_at": (iso(d.next_attempt_at)
                                     if d.state == webhooks.PENDING else None),
                 "created_at": iso(d.created_at), "finished_at": iso(d.finished_at)}
                for d in deliveries]
