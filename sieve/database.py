"""`Database`: every read and write of Sieve's tables goes through this class.

Views and tasks call its methods; none of them builds a query. State changes are
conditional updates (`transition`), so two workers racing on one prediction (a
redelivered task, a cancel during classification) cannot both win: the first change is
kept, the second is told it lost.
"""

import hashlib
import threading
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, nullcontext
from datetime import timedelta

from sqlalchemy import Connection, Row, create_engine, event, insert, or_, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from sieve.models import (
    FINAL_STATES,
    PIPELINES,
    QUEUED,
    Prediction,
    PredictionEvent,
    StoredImage,
    describe,
    utcnow,
)

PREDICTIONS = Prediction.__table__
EVENTS = PredictionEvent.__table__
IMAGES = StoredImage.__table__


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
        # SQLite has one writer at a time, and its busy handler waits by sleeping: threads
        # of one process take turns here instead. PostgreSQL needs no such lock.
        self._write_lock = threading.Lock() if url.startswith("sqlite") else nullcontext()

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A transaction: committed when the block ends, rolled back on an exception."""
        with self._sessions() as session, session.begin():
            yield session

    @contextmanager
    def _writing(self) -> Iterator[Connection]:
        """A write transaction on a bare connection (the hot paths skip the ORM)."""
        with self._write_lock, self.engine.begin() as connection:
            yield connection

    def dispose(self) -> None:
        """Close every pooled connection (after a fork, or at shutdown)."""
        self.engine.dispose()

    # Images

    def get_image(self, key: str) -> bytes | None:
        """The bytes stored under `key`, or None."""
        with self.engine.connect() as connection:
            return connection.scalar(select(IMAGES.c.data).where(IMAGES.c.key == key))

    # Predictions

    def create_prediction(self, image: bytes, content_type: str, pipeline: str,
                          filename: str = "", user_id: int | None = None,
                          request_id: str | None = None, broker_epoch: str | None = None
                          ) -> Prediction:
        """Store the image and a new prediction in state `queued`, with its first event,
        in one transaction."""
        if pipeline not in PIPELINES:
            raise ValueError(f"unknown pipeline {pipeline!r}: choose one of {PIPELINES}")
        now = utcnow()
        key = uuid.uuid4().hex
        prediction = Prediction(id=uuid.uuid4().hex, image_key=key, pipeline=pipeline,
                                filename=filename[:255], user_id=user_id, state=QUEUED,
                                request_id=request_id, broker_epoch=broker_epoch,
                                created_at=now, updated_at=now)
        with self._writing() as connection:
            connection.execute(insert(IMAGES).values(
                key=key, data=image, content_type=content_type, size=len(image),
                sha256=hashlib.sha256(image).hexdigest(), created_at=now))
            connection.execute(insert(PREDICTIONS).values(
                {c.name: getattr(prediction, c.name) for c in PREDICTIONS.c}))
            connection.execute(insert(EVENTS).values(
                prediction_id=prediction.id, state=QUEUED, data=describe(prediction),
                created_at=now))
        return prediction

    def get_prediction(self, prediction_id: str) -> Prediction | None:
        """One prediction by id, or None."""
        with self.session() as s:
            return s.get(Prediction, prediction_id)

    def work_item(self, prediction_id: str) -> Row | None:
        """A prediction's fields and its image bytes (`data`), in one query; None if absent."""
        with self.engine.connect() as connection:
            return connection.execute(
                select(PREDICTIONS, IMAGES.c.data)
                .outerjoin(IMAGES, IMAGES.c.key == PREDICTIONS.c.image_key)
                .where(PREDICTIONS.c.id == prediction_id)).first()

    def mark_enqueued(self, prediction_id: str, broker_epoch: str) -> None:
        """Record which Redis (by run id) holds the prediction's message."""
        with self._writing() as connection:
            connection.execute(update(PREDICTIONS).where(PREDICTIONS.c.id == prediction_id)
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
        with self._writing() as connection:
            row = connection.execute(
                update(PREDICTIONS)
                # OR of equalities rather than IN: an IN list is expanded on every call,
                # which costs more than the rest of the statement on this hot path.
                .where(PREDICTIONS.c.id == prediction_id,
                       or_(*(PREDICTIONS.c.state == allowed for allowed in allowed_from)))
                .values(**values).returning(*PREDICTIONS.c)).first()
            if row is None:
                return None
            data = describe(row)
            event_id = connection.execute(
                insert(EVENTS).values(prediction_id=prediction_id, state=state, data=data,
                                      created_at=now).returning(EVENTS.c.id)).scalar_one()
        return {"event_id": event_id, **data}

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

