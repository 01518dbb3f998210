"""Predictions and their images: stored together in one transaction, read back by their
owner, by the workers (with the image bytes) and by the pages."""

import hashlib
import uuid

from sqlalchemy import Row, and_, func, insert, or_, select

from sieve.database.engine import Store
from sieve.models import (
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


class Predictions(Store):
    """The predictions and images tables."""

    def prediction_page(self, user_id: int, page: int = 1,
                        per_page: int = 20) -> tuple[list[Prediction], int]:
        """One page of a user's predictions, newest first, and how many there are in all."""
        mine = Prediction.user_id == user_id
        with self.session() as s:
            total = s.scalar(select(func.count()).select_from(Prediction).where(mine))
            rows = s.scalars(select(Prediction).where(mine)
                             .order_by(Prediction.created_at.desc(), Prediction.id)
                             .offset((page - 1) * per_page).limit(per_page))
            return list(rows), total

    def user_prediction(self, prediction_id: str, user_id: int) -> Prediction | None:
        """A prediction if it belongs to the user; None when absent or someone else's."""
        with self.session() as s:
            return s.scalar(select(Prediction).where(Prediction.id == prediction_id,
                                                     Prediction.user_id == user_id))

    def user_image(self, prediction_id: str, user_id: int) -> tuple[bytes, str] | None:
        """The uploaded bytes and content type of a user's prediction, or None."""
        with self.engine.connect() as connection:
            row = connection.execute(
                select(IMAGES.c.data, IMAGES.c.content_type)
                .join(PREDICTIONS, IMAGES.c.key == PREDICTIONS.c.image_key)
                .where(PREDICTIONS.c.id == prediction_id,
                       PREDICTIONS.c.user_id == user_id)).first()
        return (row.data, row.content_type) if row else None

    def get_image(self, key: str) -> bytes | None:
        """The bytes stored under `key`, or None."""
        with self.engine.connect() as connection:
            return connection.scalar(select(IMAGES.c.data).where(IMAGES.c.key == key))

    def create_prediction(self, image: bytes, content_type: str, pipeline: str,
                          filename: str = "", user_id: int | None = None,
                          request_id: str | None = None, redis_run_id: str | None = None
                          ) -> Prediction:
        """Store the image and a new prediction in state `queued`, with its first event,
        in one transaction."""
        return self.create_predictions([(image, content_type, filename)], pipeline, user_id,
                                       request_id, redis_run_id)[0]

    def create_predictions(self, uploads: list[tuple[bytes, str, str]], pipeline: str,
                           user_id: int | None = None, request_id: str | None = None,
                           redis_run_id: str | None = None) -> list[Prediction]:
        """Store (image, content type, file name) uploads and a new `queued` prediction for
        each, with its first event: all in one transaction, or none."""
        return self.create_submissions([(uploads, pipeline, user_id, request_id, None)],
                                       redis_run_id)[0]

    def create_submissions(self, submissions: list[tuple[list, str, int | None, str | None,
                                                         dict | None]],
                           redis_run_id: str | None = None) -> list[list[Prediction]]:
        """`create_predictions` for several submissions, each (uploads, pipeline, user id,
        request id, webhook), in one transaction: the predictions of each, in order. A
        webhook is None or {"url", "events", "token_id"} (see sieve/webhooks.py)."""
        for _, pipeline, _, _, _ in submissions:
            if pipeline not in PIPELINES:
                raise ValueError(f"unknown pipeline {pipeline!r}: choose one of {PIPELINES}")
        now = utcnow()
        images, created = [], []
        for uploads, pipeline, user_id, request_id, webhook in submissions:
            hook = webhook or {}
            predictions = []
            for image, content_type, filename in uploads:
                key = uuid.uuid4().hex
                images.append({"key": key, "data": image, "content_type": content_type,
                               "size": len(image),
                               "sha256": hashlib.sha256(image).hexdigest(),
                               "created_at": now})
                predictions.append(Prediction(
                    id=uuid.uuid4().hex, image_key=key, pipeline=pipeline,
                    filename=filename[:255], user_id=user_id, state=QUEUED,
                    request_id=request_id, redis_run_id=redis_run_id, created_at=now,
                    updated_at=now, webhook_url=hook.get("url"),
                    webhook_events=hook.get("events"), webhook_token_id=hook.get("token_id")))
            created.append(predictions)
        every = [p for predictions in created for p in predictions]
        with self.writing() as connection:
            connection.execute(insert(IMAGES), images)
            connection.execute(insert(PREDICTIONS), [
                {c.name: getattr(p, c.name) for c in PREDICTIONS.c} for p in every])
            connection.execute(insert(EVENTS), [
                {"prediction_id": p.id, "state": QUEUED, "data": describe(p),
                 "created_at": now} for p in every])
        return created

    def get_prediction(self, prediction_id: str) -> Prediction | None:
        """One prediction by id, or None."""
        with self.session() as s:
            return s.get(Prediction, prediction_id)

    def count_predictions(self) -> int:
        """How many predictions the database holds (of every user and state)."""
        with self.engine.connect() as connection:
            return connection.scalar(select(func.count()).select_from(PREDICTIONS))

    def work_item(self, prediction_id: str) -> Row | None:
        """A prediction's fields and its image bytes (`data`), in one query; None if absent."""
        found = self.work_items([prediction_id])
        return found[0] if found else None

    def work_items(self, prediction_ids: list[str]) -> list[Row]:
        """Predictions' fields and image bytes (`data`) in one query, in the order given
        (absent ones left out)."""
        # One id (the hot path) as an equality: an IN list is expanded on every call.
        which = (PREDICTIONS.c.id == prediction_ids[0] if len(prediction_ids) == 1
                 else PREDICTIONS.c.id.in_(prediction_ids))
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(PREDICTIONS, IMAGES.c.data)
                .outerjoin(IMAGES, IMAGES.c.key == PREDICTIONS.c.image_key)
                .where(which)).all()
        order = {pid: index for index, pid in enumerate(prediction_ids)}
        return sorted(rows, key=lambda row: order[row.id])

    def user_predictions_by_id(self, user_id: int, prediction_ids: list[str]) -> list[Row]:
        """Those of the predictions that are the user's (in no particular order), as rows
        for `describe`: waiting requests read them again and again, and skipping the ORM
        halves the cost."""
        with self.engine.connect() as connection:
            return connection.execute(select(PREDICTIONS).where(
                PREDICTIONS.c.user_id == user_id,
                PREDICTIONS.c.id.in_(prediction_ids))).all()

    def user_predictions(self, user_id: int, state: str | None = None, limit: int = 50,
                         after: str | None = None) -> list[Prediction] | None:
        """A user's predictions, newest first, from the one after prediction `after` on.

        None when `after` is not one of the user's predictions (a bad cursor).
        """
        query = select(Prediction).where(Prediction.user_id == user_id)
        if state is not None:
            query = query.where(Prediction.state == state)
        with self.session() as s:
            if after is not None:
                mark = s.get(Prediction, after)
                if mark is None or mark.user_id != user_id:
                    return None
                query = query.where(or_(
                    Prediction.created_at < mark.created_at,
                    and_(Prediction.created_at == mark.created_at, Prediction.id < mark.id)))
            query = query.order_by(Prediction.created_at.desc(), Prediction.id.desc())
            return list(s.scalars(query.limit(limit)))

