"""State changes of predictions: conditional updates, so two workers racing on one
prediction (a redelivered task, a cancel during classification) cannot both win: the first
change is kept, the second is told it lost. Each change is recorded as an event, with the
webhook deliveries it calls for, in the same transaction."""

from collections.abc import Iterable
from datetime import timedelta

from sqlalchemy import bindparam, insert, or_, select, update

from sieve import webhooks
from sieve.database.engine import Store
from sieve.models import (
    FINAL_STATES,
    Prediction,
    PredictionEvent,
    WebhookDelivery,
    describe,
    utcnow,
)

PREDICTIONS = Prediction.__table__
EVENTS = PredictionEvent.__table__
DELIVERIES = WebhookDelivery.__table__
ADD_EVENT = insert(EVENTS).returning(EVENTS.c.id)
ADD_EVENTS = insert(EVENTS).returning(EVENTS.c.id, sort_by_parameter_order=True)


def _new(column: str):
    """The bound value a transition sets `column` to."""
    return bindparam(f"new_{column}", type_=PREDICTIONS.c[column].type)


def _bound(values: dict) -> dict:
    """Values as the parameters of `_new`."""
    return {f"new_{column}": value for column, value in values.items()}


def _in_states(states: tuple[str, ...]):
    """The prediction is in one of `states`: an OR of equalities, which unlike an IN list
    is not expanded again on every call."""
    return or_(*(PREDICTIONS.c.state == state for state in states))


class Transitions(Store):
    """Predictions' states and their events."""

    def __init__(self, url: str):
        super().__init__(url)
        self._statements: dict[tuple, object] = {}  # see `_moving_one`

    def mark_enqueued(self, prediction_id: str, redis_run_id: str) -> None:
        """Record which Redis (by run id) holds the prediction's message."""
        with self.writing() as connection:
            connection.execute(update(PREDICTIONS).where(PREDICTIONS.c.id == prediction_id)
                               .values(redis_run_id=redis_run_id))

    def transition(self, prediction_id: str, state: str, allowed_from: Iterable[str],
                   **fields) -> dict | None:
        """Move to `state` if the prediction is in one of `allowed_from`.

        Returns the new event (to publish) when this call made the change, None when the
        prediction was elsewhere: already moved on by another worker, or final.
        """
        return self.transitions({prediction_id: fields}, state, allowed_from)[0]

    def transitions(self, changes: dict[str, dict], state: str,
                    allowed_from: Iterable[str]) -> list[dict | None]:
        """`transition` for several predictions ({id: fields}) in one transaction: for
        each, in order, its new event or None."""
        now = utcnow()
        values = {"state": state, "updated_at": now}
        if state in FINAL_STATES:
            values["finished_at"] = now
        allowed_from = tuple(allowed_from)
        with self.writing() as connection:
            if len(changes) > 1 and not any(changes.values()):
                # The same change for all of them: one statement.
                found = {row.id: row for row in connection.execute(
                    self._moving_all(allowed_from, tuple(values)),
                    {"ids": list(changes), **_bound(values)})}
                rows = [found.get(pid) for pid in changes]
            else:
                rows = [connection.execute(
                    self._moving_one(allowed_from, tuple(values) + tuple(fields)),
                    {"pid": pid, **_bound(values), **_bound(fields)}).first()
                    for pid, fields in changes.items()]
            moved_rows = [row for row in rows if row is not None]
            moved = [describe(row) for row in moved_rows]
            if not moved:
                return [None] * len(rows)
            rows_of_events = [{"prediction_id": data["id"], "state": state, "data": data,
                               "created_at": now} for data in moved]
            if len(moved) == 1:  # a plain INSERT costs less than a one-row executemany
                event_ids = [connection.execute(ADD_EVENT, rows_of_events[0]).scalar_one()]
            else:
                event_ids = connection.execute(ADD_EVENTS, rows_of_events).scalars().all()
            # Webhook deliveries are recorded with their events: none is lost.
            deliveries = webhooks.deliveries_for(moved_rows, event_ids, state, now)
            if deliveries:
                connection.execute(insert(DELIVERIES), deliveries)
        events = iter([{"event_id": event_id, **data}
                       for event_id, data in zip(event_ids, moved, strict=True)])
        return [next(events) if row is not None else None for row in rows]

    # The statements of `transitions`, built once per shape: building a statement and its
    # cache key costs more than running it on the one-prediction path. Values are bound
    # per call (named `new_<column>`: a column's own name is reserved in SET).

    def _moving_one(self, allowed_from: tuple[str, ...], columns: tuple[str, ...]):
        """UPDATE one prediction (`pid`) in an allowed state, RETURNING its row."""
        key = ("one", allowed_from, columns)
        if key not in self._statements:
            self._statements[key] = (
                update(PREDICTIONS)
                .where(PREDICTIONS.c.id == bindparam("pid"), _in_states(allowed_from))
                .values({column: _new(column) for column in columns})
                .returning(*PREDICTIONS.c))
        return self._statements[key]

    def _moving_all(self, allowed_from: tuple[str, ...], columns: tuple[str, ...]):
        """UPDATE the predictions named by `ids` in an allowed state, RETURNING their rows."""
        key = ("all", allowed_from, columns)
        if key not in self._statements:
            self._statements[key] = (
                update(PREDICTIONS)
                .where(PREDICTIONS.c.id.in_(bindparam("ids", expanding=True)),
                       _in_states(allowed_from))
                .values({column: _new(column) for column in columns})
                .returning(*PREDICTIONS.c))
        return self._statements[key]

    def events(self, prediction_id: str, after: int = 0) -> list[dict]:
        """The prediction's state changes with an event id above `after`, oldest first."""
        with self.session() as s:
            rows = s.scalars(select(PredictionEvent)
                             .where(PredictionEvent.prediction_id == prediction_id,
                                    PredictionEvent.id > after)
                             .order_by(PredictionEvent.id))
            return [row.to_dict() for row in rows]

    def unfinished_outside(self, redis_run_id: str, idle_for: float = 5.0,
                           limit: int = 500) -> list[Prediction]:
        """Unfinished predictions last enqueued on another Redis run (or never enqueued).

        Only those untouched for `idle_for` seconds: one a worker is busy with, or one the
        web tier is enqueuing right now, is left alone.
        """
        before = utcnow() - timedelta(seconds=idle_for)
        with self.session() as s:
            return list(s.scalars(
                select(Prediction)
                .where(Prediction.state.not_in(FINAL_STATES), Prediction.updated_at < before,
                       or_(Prediction.redis_run_id.is_(None),
                           Prediction.redis_run_id != redis_run_id))
                .order_by(Prediction.created_at).limit(limit)))

