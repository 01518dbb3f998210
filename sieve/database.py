"""`Database`: every read and write of Sieve's tables goes through this class.

Views and tasks call its methods; none of them builds a query. State changes are
conditional updates (`transition`), so two workers racing on one prediction (a
redelivered task, a cancel during classification) cannot both win: the first change is
kept, the second is told it lost.
"""

import hashlib
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import timedelta

from sqlalchemy import create_engine, event, or_, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from sieve.models import (
    FINAL_STATES,
    PIPELINES,
    QUEUED,
    Prediction,
    PredictionEvent,
    StoredImage,
    utcnow,
)


def make_engine(url: str) -> Engine:
    """An engine for SQLite (the embedded default) or PostgreSQL, tuned for many threads."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=40)


def _sqlite_pragmas(connection, _record) -> None:
    """WAL lets readers and one writer work at once; foreign keys are off by default."""
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


class Database:
    """Sieve's data: stored images, predictions and their state changes."""

    def __init__(self, url: str):
        self.url = url
        self.engine = make_engine(url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A transaction: committed when the block ends, rolled back on an exception."""
        with self._sessions() as session, session.begin():
            yield session

    def dispose(self) -> None:
        """Close every pooled connection (after a fork, or at shutdown)."""
        self.engine.dispose()

    # Images

    def put_image(self, data: bytes, content_type: str) -> str:
        """Store image bytes; returns the key that web and workers use to find them."""
        key = uuid.uuid4().hex
        with self.session() as s:
            s.add(StoredImage(key=key, data=data, content_type=content_type, size=len(data),
                              sha256=hashlib.sha256(data).hexdigest()))
        return key

    def get_image(self, key: str) -> bytes | None:
        """The bytes stored under `key`, or None."""
        with self.session() as s:
            return s.scalar(select(StoredImage.data).where(StoredImage.key == key))

    # Predictions

    def create_prediction(self, image_key: str, pipeline: str, filename: str = "",
                          user_id: int | None = None, request_id: str | None = None
                          ) -> Prediction:
        """A new prediction in state `queued`, with its first event."""
        if pipeline not in PIPELINES:
            raise ValueError(f"unknown pipeline {pipeline!r}: choose one of {PIPELINES}")
        prediction = Prediction(id=uuid.uuid4().hex, image_key=image_key, pipeline=pipeline,
                                filename=filename[:255], user_id=user_id, state=QUEUED,
                                request_id=request_id, created_at=utcnow(),
                                updated_at=utcnow())
        with self.session() as s:
            s.add(prediction)
            s.flush()
            s.add(_event(prediction))
        return prediction

    def get_prediction(self, prediction_id: str) -> Prediction | None:
        """One prediction by id, or None."""
        with self.session() as s:
            return s.get(Prediction, prediction_id)

    def mark_enqueued(self, prediction_id: str, broker_epoch: str) -> None:
        """Record which Redis (by run id) holds the prediction's message."""
        with self.session() as s:
            s.execute(update(Prediction).where(Prediction.id == prediction_id)
                      .values(broker_epoch=broker_epoch))

    def transition(self, prediction_id: str, state: str, allowed_from: Iterable[str],
                   **fields) -> dict | None:
        """Move to `state` if the prediction is in one of `allowed_from`.

        Returns the new event (to publish) when this call made the change, None when the
        prediction was elsewhere: already moved on by another worker, or final.
        """
        now = utcnow()
        values = {"state": state, "updated_at": now, **fields}
        if state in FINAL_STATES:
            values["finished_at"] = now
        with self.session() as s:
            changed = s.execute(
                update(Prediction)
                .where(Prediction.id == prediction_id, Prediction.state.in_(allowed_from))
                .values(**values)
            ).rowcount
            if not changed:
                return None
            prediction = s.get(Prediction, prediction_id, populate_existing=True)
            change = _event(prediction)
            s.add(change)
            s.flush()
            return change.to_dict()

    def events(self, prediction_id: str, after: int = 0) -> list[dict]:
        """The prediction's state changes with an event id above `after`, oldest first."""
        with self.session() as s:
            rows = s.scalars(select(PredictionEvent)
                             .where(PredictionEvent.prediction_id == prediction_id,
                                    PredictionEvent.id > after)
                             .order_by(PredictionEvent.id))
            return [row.to_dict() for row in rows]

    def unfinished_outside(self, broker_epoch: str, idle_for: float = 5.0,
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
                       or_(Prediction.broker_epoch.is_(None),
                           Prediction.broker_epoch != broker_epoch))
                .order_by(Prediction.created_at).limit(limit)))


def _event(prediction: Prediction) -> PredictionEvent:
    """The event row recording the prediction's current state."""
    return PredictionEvent(prediction_id=prediction.id, state=prediction.state,
                           data=prediction.to_dict(), created_at=utcnow())
