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
from datetime import UTC, timedelta

from sqlalchemy import (
    Connection,
    Row,
    and_,
    bindparam,
    create_engine,
    delete,
    event,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from sieve import webhooks
from sieve.models import (
    CANCELLED,
    FAILED,
    FINAL_STATES,
    PIPELINES,
    QUEUED,
    RUNNING,
    ApiToken,
    IdempotentRequest,
    Prediction,
    PredictionEvent,
    StoredImage,
    TrainingRun,
    User,
    WebhookDelivery,
    describe,
    utcnow,
)

# The largest integer the databases hold (a signed 64-bit column): larger ids or
# offsets do not exist, and are refused before they reach a query.
LARGEST_INTEGER = 2**63 - 1

PREDICTIONS = Prediction.__table__
EVENTS = PredictionEvent.__table__
IMAGES = StoredImage.__table__
USERS = User.__table__
TOKENS = ApiToken.__table__
DELIVERIES = WebhookDelivery.__table__
# Every API request looks its token up: a Core statement built once, with the owner's
# columns labelled `owner_<name>`.
_TOKEN_OWNER = (
    select(*TOKENS.c, *(column.label(f"owner_{column.name}") for column in USERS.c))
    .join_from(TOKENS, USERS, USERS.c.id == TOKENS.c.user_id)
    .where(TOKENS.c.token_hash == bindparam("token_hash")))
_ADD_EVENT = insert(EVENTS).returning(EVENTS.c.id)
_ADD_EVENTS = insert(EVENTS).returning(EVENTS.c.id, sort_by_parameter_order=True)


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


class DuplicateEmail(ValueError):
    """An account with this email exists already."""


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
        self._statements: dict[tuple, object] = {}  # see `_moving_one`

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

    # Users

    def create_user(self, email: str, password_hash: str, is_admin: bool = False) -> User:
        """A new account; DuplicateEmail when the email (compared in lower case) is taken."""
        user = User(email=email.strip().lower(), password_hash=password_hash,
                    is_admin=is_admin, created_at=utcnow())
        try:
            with self._write_lock, self.session() as s:
                s.add(user)
        except IntegrityError as exc:
            raise DuplicateEmail(f"an account with {user.email} already exists") from exc
        return user

    def get_user(self, user_id: int) -> User | None:
        """One account by id, or None."""
        with self.session() as s:
            return s.get(User, user_id)

    def user_by_email(self, email: str) -> User | None:
        """The account with this email (any case), or None."""
        with self.session() as s:
            return s.scalar(select(User).where(User.email == email.strip().lower()))

    def set_password_hash(self, user_id: int, password_hash: str,
                          end_sessions: bool = False) -> None:
        """Replace an account's password hash: a rehash of the same password, or (with
        `end_sessions`) a new password, which also ends every session of the account."""
        values = {"password_hash": password_hash}
        if end_sessions:
            values["session_version"] = USERS.c.session_version + 1
        with self._writing() as connection:
            connection.execute(update(USERS).where(USERS.c.id == user_id).values(**values))

    def end_sessions(self, user_id: int) -> None:
        """End every session of an account (its session version moves on)."""
        with self._writing() as connection:
            connection.execute(update(USERS).where(USERS.c.id == user_id)
                               .values(session_version=USERS.c.session_version + 1))

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
        return self.create_predictions([(image, content_type, filename)], pipeline, user_id,
                                       request_id, broker_epoch)[0]

    def create_predictions(self, uploads: list[tuple[bytes, str, str]], pipeline: str,
                           user_id: int | None = None, request_id: str | None = None,
                           broker_epoch: str | None = None) -> list[Prediction]:
        """Store (image, content type, file name) uploads and a new `queued` prediction for
        each, with its first event: all in one transaction, or none."""
        return self.create_submissions([(uploads, pipeline, user_id, request_id, None)],
                                       broker_epoch)[0]

    def create_submissions(self, submissions: list[tuple[list, str, int | None, str | None,
                                                         dict | None]],
                           broker_epoch: str | None = None) -> list[list[Prediction]]:
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
                    request_id=request_id, broker_epoch=broker_epoch, created_at=now,
                    updated_at=now, webhook_url=hook.get("url"),
                    webhook_events=hook.get("events"), webhook_token_id=hook.get("token_id")))
            created.append(predictions)
        every = [p for predictions in created for p in predictions]
        with self._writing() as connection:
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
        with self._writing() as connection:
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
                event_ids = [connection.execute(_ADD_EVENT, rows_of_events[0]).scalar_one()]
            else:
                event_ids = connection.execute(_ADD_EVENTS, rows_of_events).scalars().all()
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

    # Training runs

    def create_training_run(self, model: str, params: dict, user_id: int | None = None,
                            broker_epoch: str | None = None) -> TrainingRun:
        """A new training run in state `queued`."""
        now = utcnow()
        run = TrainingRun(id=uuid.uuid4().hex, model=model, params=params, user_id=user_id,
                          state=QUEUED, cancel_requested=False, log="",
                          broker_epoch=broker_epoch, created_at=now, updated_at=now)
        with self.session() as s:
            s.add(run)
        return run

    def queued_runs_outside(self, broker_epoch: str, idle_for: float = 5.0
                            ) -> list[TrainingRun]:
        """Queued training runs last sent to another Redis run (or never sent), untouched
        for `idle_for` seconds (one being submitted right now is left alone)."""
        before = utcnow() - timedelta(seconds=idle_for)
        with self.session() as s:
            return list(s.scalars(
                select(TrainingRun)
                .where(TrainingRun.state == QUEUED, TrainingRun.updated_at < before,
                       or_(TrainingRun.broker_epoch.is_(None),
                           TrainingRun.broker_epoch != broker_epoch))
                .order_by(TrainingRun.created_at)))

    def mark_training_run_sent(self, run_id: str, broker_epoch: str) -> None:
        """Record which Redis (by run id) holds the training run's message."""
        with self.session() as s:
            s.execute(update(TrainingRun).where(TrainingRun.id == run_id)
                      .values(broker_epoch=broker_epoch))

    def get_training_run(self, run_id: str) -> TrainingRun | None:
        """One training run by id, or None."""
        with self.session() as s:
            return s.get(TrainingRun, run_id)

    def list_training_runs(self, limit: int = 50, user_id: int | None = None
                           ) -> list[TrainingRun]:
        """The newest training runs first (of one user when given)."""
        query = select(TrainingRun).order_by(TrainingRun.created_at.desc()).limit(limit)
        if user_id is not None:
            query = query.where(TrainingRun.user_id == user_id)
        with self.session() as s:
            return list(s.scalars(query))

    def start_training_run(self, run_id: str, worker: str,
                           task_id: str | None = None) -> TrainingRun | None:
        """Move a queued run to `running` for this worker; None when it is not queued (a
        second delivery, or cancelled before it started)."""
        now = utcnow()
        with self.session() as s:
            changed = s.execute(
                update(TrainingRun)
                .where(TrainingRun.id == run_id, TrainingRun.state == QUEUED)
                .values(state=RUNNING, worker=worker, task_id=task_id, started_at=now,
                        heartbeat_at=now, updated_at=now)).rowcount
            return s.get(TrainingRun, run_id, populate_existing=True) if changed else None

    def record_training_progress(self, run_id: str, log: str = "",
                                 **fields) -> TrainingRun | None:
        """Heartbeat of a running run: progress fields, log lines appended.

        Returns the run (its `cancel_requested` tells the worker to stop), or None when it
        is no longer running: then the worker must stop without publishing.
        """
        now = utcnow()
        values = {"heartbeat_at": now, "updated_at": now, **fields}
        if log:
            values["log"] = func.coalesce(TrainingRun.log, "") + log
        with self.session() as s:
            changed = s.execute(
                update(TrainingRun)
                .where(TrainingRun.id == run_id, TrainingRun.state == RUNNING)
                .values(**values)).rowcount
            return s.get(TrainingRun, run_id, populate_existing=True) if changed else None

    def request_training_cancel(self, run_id: str) -> TrainingRun | None:
        """Cancel a run: a queued one at once, a running one at its next step (the worker
        sees `cancel_requested`). A finished run is left as it is. None: no such run."""
        now = utcnow()
        with self.session() as s:
            s.execute(update(TrainingRun)
                      .where(TrainingRun.id == run_id, TrainingRun.state == QUEUED)
                      .values(state=CANCELLED, reason="cancelled before it started",
                              cancel_requested=True, updated_at=now, finished_at=now))
            s.execute(update(TrainingRun)
                      .where(TrainingRun.id == run_id, TrainingRun.state == RUNNING)
                      .values(cancel_requested=True, updated_at=now))
            return s.get(TrainingRun, run_id, populate_existing=True)

    def finish_training_run(self, run_id: str, state: str,
                            allowed_from: Iterable[str] = (RUNNING,), log: str = "",
                            **fields) -> TrainingRun | None:
        """Move a run to a final state if it is in `allowed_from`; None when it was not."""
        now = utcnow()
        values = {"state": state, "updated_at": now, "finished_at": now, **fields}
        if log:
            values["log"] = func.coalesce(TrainingRun.log, "") + log
        with self.session() as s:
            changed = s.execute(
                update(TrainingRun)
                .where(TrainingRun.id == run_id, TrainingRun.state.in_(allowed_from))
                .values(**values)).rowcount
            return s.get(TrainingRun, run_id, populate_existing=True) if changed else None

    def fail_stale_training_runs(self, stale_after: float) -> list[TrainingRun]:
        """Mark failed the running runs whose heartbeat is older than `stale_after`
        seconds (their worker died); returns them."""
        before = utcnow() - timedelta(seconds=stale_after)
        failed = []
        with self.session() as s:
            stale = list(s.scalars(select(TrainingRun).where(
                TrainingRun.state == RUNNING, TrainingRun.heartbeat_at < before)))
        for run in stale:
            reason = (f"the training worker {run.worker} stopped sending heartbeats (last "
                      f"at {_iso_utc(run.heartbeat_at)}): it died or lost the database, and "
                      "nothing was published; submit the run again")
            with self.session() as s:
                changed = s.execute(
                    update(TrainingRun)
                    .where(TrainingRun.id == run.id, TrainingRun.state == RUNNING,
                           TrainingRun.heartbeat_at < before)
                    .values(state=FAILED, reason=reason, updated_at=utcnow(),
                            finished_at=utcnow())).rowcount
                if changed:
                    failed.append(s.get(TrainingRun, run.id, populate_existing=True))
        return failed


    # API tokens and idempotent requests

    def ping(self) -> None:
        """Run a trivial query; raises SQLAlchemyError when the database is unreachable."""
        with self.engine.connect() as connection:
            connection.execute(select(1))

    def create_api_token(self, user_id: int, name: str, token_hash: str, prefix: str,
                         scopes: list[str], webhook_secret: str | None = None) -> ApiToken:
        """Store a new token by its hash (the plaintext is never stored), with the secret
        that signs its webhooks."""
        token = ApiToken(user_id=user_id, name=name[:100], token_hash=token_hash,
                         prefix=prefix, scopes=list(scopes), created_at=utcnow(),
                         webhook_secret=webhook_secret)
        with self.session() as s:
            s.add(token)
        return token

    def api_token_owner(self, token_hash: str) -> tuple[ApiToken, User] | None:
        """The token with this hash and the user it belongs to, or None. Both are
        detached records (read in one query without the ORM session, which costs more
        than the query itself)."""
        with self.engine.connect() as connection:
            row = connection.execute(_TOKEN_OWNER, {"token_hash": token_hash}).first()
        if row is None:
            return None
        values = row._mapping
        return (ApiToken(**{column.name: values[column.name] for column in TOKENS.c}),
                User(**{column.name: values[f"owner_{column.name}"] for column in USERS.c}))

    def api_tokens(self, user_id: int) -> list[ApiToken]:
        """A user's tokens, revoked ones included, newest first."""
        with self.session() as s:
            return list(s.scalars(select(ApiToken).where(ApiToken.user_id == user_id)
                                  .order_by(ApiToken.id.desc())))

    def revoke_api_token(self, user_id: int, token_id: int) -> bool:
        """Revoke one of the user's tokens; False when it is not theirs or already revoked."""
        with self.session() as s:
            return bool(s.execute(
                update(ApiToken)
                .where(ApiToken.id == token_id, ApiToken.user_id == user_id,
                       ApiToken.revoked_at.is_(None))
                .values(revoked_at=utcnow())).rowcount)

    def touch_api_token(self, token: ApiToken, every: float = 60.0) -> None:
        """Record that a token was used, at most once per `every` seconds (one write, not
        one per request). No statement at all when the token as read shows a use within
        that time: a write per request would queue behind the workers' writes."""
        now = utcnow()
        seen = token.last_used_at
        if seen is not None and (seen if seen.tzinfo else seen.replace(tzinfo=UTC)) >= (
                now - timedelta(seconds=every)):
            return
        token_id = token.id
        with self.session() as s:
            s.execute(update(ApiToken)
                      .where(ApiToken.id == token_id,
                             or_(ApiToken.last_used_at.is_(None),
                                 ApiToken.last_used_at < now - timedelta(seconds=every)))
                      .values(last_used_at=now))

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

    def claim_idempotency_key(self, user_id: int, key: str, fingerprint: str,
                              keep_for: float = 86400.0, abandon_after: float = 60.0
                              ) -> IdempotentRequest | None:
        """Reserve a key for a request (status 0 until `finish_idempotent_request`).

        Returns None when this call holds the key now, else the row that holds it: a
        finished answer to replay, or another request still in progress. A key older than
        `keep_for` seconds, or a reservation older than `abandon_after` (its request
        died), is taken over.
        """
        now = utcnow()
        try:
            with self.session() as s:
                s.add(IdempotentRequest(user_id=user_id, key=key, fingerprint=fingerprint,
                                        status=0, response={}, created_at=now))
            return None
        except IntegrityError:
            pass  # the key is known: replay it, unless it has expired or was abandoned
        with self.session() as s:
            taken = s.execute(
                update(IdempotentRequest)
                .where(IdempotentRequest.user_id == user_id, IdempotentRequest.key == key,
                       or_(IdempotentRequest.created_at < now - timedelta(seconds=keep_for),
                           and_(IdempotentRequest.status == 0,
                                IdempotentRequest.created_at
                                < now - timedelta(seconds=abandon_after))))
                .values(fingerprint=fingerprint, status=0, response={}, created_at=now)
            ).rowcount
            if taken:
                return None
            return s.scalars(select(IdempotentRequest).where(
                IdempotentRequest.user_id == user_id, IdempotentRequest.key == key)).first()

    def finish_idempotent_request(self, user_id: int, key: str, status: int,
                                  response: dict) -> None:
        """Store the answer to replay for a reserved key."""
        with self.session() as s:
            s.execute(update(IdempotentRequest)
                      .where(IdempotentRequest.user_id == user_id,
                             IdempotentRequest.key == key)
                      .values(status=status, response=response))

    def release_idempotency_key(self, user_id: int, key: str) -> None:
        """Drop a reservation whose request failed, so that a retry runs it again."""
        with self.session() as s:
            s.execute(delete(IdempotentRequest)
                      .where(IdempotentRequest.user_id == user_id,
                             IdempotentRequest.key == key, IdempotentRequest.status == 0))


def _event(prediction: Prediction) -> PredictionEvent:
    """The event row recording the prediction's current state."""
    return PredictionEvent(prediction_id=prediction.id, state=prediction.state,
                           data=prediction.to_dict(), created_at=utcnow())


def _iso_utc(moment) -> str:
    """A timestamp for a message, in UTC (SQLite hands back naive datetimes: they are UTC)."""
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC") if moment else "never"
