"""The database tables, as SQLAlchemy models. Schema changes go through `sieve/migrations`."""

from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

QUEUED, FILTERING, CLASSIFYING = "queued", "filtering", "classifying"
REJECTED, DONE, FAILED, CANCELLED = "rejected", "done", "failed", "cancelled"
STATES = (QUEUED, FILTERING, CLASSIFYING, REJECTED, DONE, FAILED, CANCELLED)
FINAL_STATES = frozenset({REJECTED, DONE, FAILED, CANCELLED})
UNFINISHED = tuple(state for state in STATES if state not in FINAL_STATES)

# What an image goes through: the filter then the classifier, or the classifier alone.
FILTER_THEN_CLASSIFY, CLASSIFY_ONLY = "filter", "classifier"
PIPELINES = (FILTER_THEN_CLASSIFY, CLASSIFY_ONLY)


def utcnow() -> datetime:
    """The current time, timezone-aware (stored as UTC)."""
    return datetime.now(UTC)


class Base(DeclarativeBase):
    """Declarative base of every Sieve table."""


class User(Base):
    """An account: an email and a password hash, never the password."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # Sessions carry the version they were made under: bumping it ends all of them.
    session_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class ApiToken(Base):
    """A bearer token for the JSON API: only its SHA-256 is stored; shown once when made."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    scopes: Mapped[list] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Signs the webhooks of the token's predictions (Standard Webhooks, `whsec_...`): an
    # HMAC key, so it is kept as it is; shown once, with the token. None on tokens made
    # before webhooks existed.
    webhook_secret: Mapped[str | None] = mapped_column(String(64))


class IdempotentRequest(Base):
    """The first answer to a request sent with an Idempotency-Key, replayed on a retry."""

    __tablename__ = "idempotent_requests"
    __table_args__ = (UniqueConstraint("user_id", "key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    key: Mapped[str] = mapped_column(String(255))
    fingerprint: Mapped[str] = mapped_column(String(64))
    status: Mapped[int] = mapped_column(Integer)
    response: Mapped[dict] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class StoredImage(Base):
    """An uploaded image, kept by key where the web tier and every worker host can read it."""

    __tablename__ = "images"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)
    content_type: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Prediction(Base):
    """One image through the pipeline: its state and, once final, its outcome."""

    __tablename__ = "predictions"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    image_key: Mapped[str] = mapped_column(ForeignKey("images.key"))
    filename: Mapped[str] = mapped_column(String(255), default="")
    pipeline: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16), index=True)
    reason: Mapped[str | None] = mapped_column(Text)
    filter_score: Mapped[float | None] = mapped_column(Float)
    filter_threshold: Mapped[float | None] = mapped_column(Float)
    label: Mapped[str | None] = mapped_column(String(128))
    probability: Mapped[float | None] = mapped_column(Float)
    top_k: Mapped[list | None] = mapped_column(JSON)
    model_versions: Mapped[dict | None] = mapped_column(JSON)
    request_id: Mapped[str | None] = mapped_column(String(64))
    # Redis run id current when the prediction was last enqueued: a different one means
    # Redis restarted since, and the message may be gone (see workers/recovery.py).
    redis_run_id: Mapped[str | None] = mapped_column(String(64))
    # Where its state changes are posted (see sieve/webhooks.py): the URL, which events
    # (`final` or `all`), and the token whose secret signs them.
    webhook_url: Mapped[str | None] = mapped_column(Text)
    webhook_events: Mapped[str | None] = mapped_column(String(8))
    webhook_token_id: Mapped[int | None] = mapped_column(ForeignKey("api_tokens.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    @property
    def final(self) -> bool:
        """True once nothing will change the prediction any more."""
        return self.state in FINAL_STATES

    def to_dict(self) -> dict:
        """What clients are told about the prediction (no image bytes)."""
        return describe(self)


def describe(prediction) -> dict:
    """A prediction (model object or database row) as clients see it; no image bytes."""
    p = prediction
    return {
        "id": p.id, "state": p.state, "pipeline": p.pipeline, "filename": p.filename,
        "reason": p.reason, "filter_score": p.filter_score,
        "filter_threshold": p.filter_threshold, "label": p.label,
        "probability": p.probability, "top_k": p.top_k,
        "model_versions": p.model_versions or {}, "created_at": _iso(p.created_at),
        "updated_at": _iso(p.updated_at), "finished_at": _iso(p.finished_at),
    }


class PredictionEvent(Base):
    """One state change of a prediction, numbered so that event streams can resume."""

    __tablename__ = "prediction_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    prediction_id: Mapped[str] = mapped_column(ForeignKey("predictions.id"), index=True)
    state: Mapped[str] = mapped_column(String(16))
    data: Mapped[dict] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    def to_dict(self) -> dict:
        """The event as published: its number, the state and the prediction's fields."""
        return {"event_id": self.id, **self.data}


class WebhookDelivery(Base):
    """One event of a prediction to post to its webhook: the event's id is the message's
    `webhook-id`, and an event is delivered once (at most one row per event)."""

    __tablename__ = "webhook_deliveries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    event_id: Mapped[int] = mapped_column(ForeignKey("prediction_events.id"), unique=True)
    prediction_id: Mapped[str] = mapped_column(ForeignKey("predictions.id"), index=True)
    url: Mapped[str] = mapped_column(Text)
    # pending (an attempt is due at next_attempt_at), delivered or failed (gave up).
    state: Mapped[str] = mapped_column(String(16), index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class WebhookAttempt(Base):
    """One try at posting a delivery: when, how long, the outcome and the response's
    status code (never its body)."""

    __tablename__ = "webhook_attempts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    delivery_id: Mapped[int] = mapped_column(ForeignKey("webhook_deliveries.id"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    seconds: Mapped[float] = mapped_column(Float)
    outcome: Mapped[str] = mapped_column(String(16))
    status_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(String(255))


def _iso(moment: datetime | None) -> str | None:
    """ISO 8601 in UTC (SQLite hands back naive datetimes: they are UTC)."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.isoformat()


iso = _iso  # the public name, for the other packages


# Training runs: submitted as tasks on the `training` queue (see workers/runs.py).
RUNNING = "running"
RUN_STATES = (QUEUED, RUNNING, DONE, FAILED, CANCELLED)
RUN_FINAL_STATES = frozenset({DONE, FAILED, CANCELLED})


class TrainingRun(Base):
    """One training job: its parameters, live progress, log and outcome."""

    __tablename__ = "training_runs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    model: Mapped[str] = mapped_column(String(32))
    params: Mapped[dict] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(String(16), index=True)
    reason: Mapped[str | None] = mapped_column(Text)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    # Latest figures (stage, epoch, step, loss, accuracy, seconds left), the loss and
    # accuracy curve sampled at each heartbeat, and one line per finished epoch.
    progress: Mapped[dict | None] = mapped_column(JSON)
    curve: Mapped[list | None] = mapped_column(JSON)
    history: Mapped[list | None] = mapped_column(JSON)
    log: Mapped[str] = mapped_column(Text, default="")
    version: Mapped[str | None] = mapped_column(String(32))
    metrics: Mapped[dict | None] = mapped_column(JSON)
    promoted: Mapped[str | None] = mapped_column(Text)
    task_id: Mapped[str | None] = mapped_column(String(64))
    worker: Mapped[str | None] = mapped_column(String(255))
    # Redis run id current when the run was last sent (as on predictions): a queued run
    # sent to a Redis that has restarted since is sent again (see workers/runs.py).
    redis_run_id: Mapped[str | None] = mapped_column(String(64))
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    @property
    def final(self) -> bool:
        """True once the run has ended: done, failed or cancelled."""
        return self.state in RUN_FINAL_STATES

    def to_dict(self, with_log: bool = False) -> dict:
        """What clients are told about the run (the log only when asked: it can be long)."""
        answer = {
            "id": self.id, "model": self.model, "params": self.params, "state": self.state,
            "reason": self.reason, "cancel_requested": bool(self.cancel_requested),
            "progress": self.progress or {}, "curve": self.curve or [],
            "history": self.history or [], "version": self.version,
            "metrics": self.metrics, "promoted": self.promoted, "worker": self.worker,
            "heartbeat_at": _iso(self.heartbeat_at), "created_at": _iso(self.created_at),
            "started_at": _iso(self.started_at), "updated_at": _iso(self.updated_at),
            "finished_at": _iso(self.finished_at),
        }
        if with_log:
            answer["log"] = self.log or ""
        return answer
