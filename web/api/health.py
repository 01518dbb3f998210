"""Health checks at the root: `/healthz` (the process answers) and `/readyz` (the broker,
the database and a served version of each model are reachable). No token needed."""

import redis
from flask import Blueprint
from sqlalchemy.exc import SQLAlchemyError

from training.store import StoreError
from web.api.models import store
from web.services import services
from workers.client import _redis

health = Blueprint("health", __name__)

SERVED_MODELS = ("filter", "classifier")


@health.get("/healthz")
def healthz():
    """Alive: the process answers requests."""
    return {"status": "ok"}


def _broker() -> str | None:
    """None when the broker answers a ping, else why not."""
    try:
        _redis(services().settings.broker_url).ping()
    except redis.RedisError as exc:
        return f"the broker does not answer: {exc}"
    return None


def _database() -> str | None:
    """None when the database answers a query, else why not."""
    try:
        services().db.ping()
    except SQLAlchemyError as exc:
        return f"the database does not answer: {getattr(exc, 'orig', None) or exc}"
    return None


def _model(name: str) -> str | None:
    """None when the store has a version of `name` to serve, else why not."""
    try:
        if store().served(name) is None:
            return f"no {name} has been published to the model store"
    except (StoreError, OSError) as exc:
        return f"the model store cannot be read: {exc}"
    return None


@health.get("/readyz")
def readyz():
    """Ready: 200 when every dependency is reachable, else 503 naming what is not."""
    problems = {"broker": _broker(), "database": _database(),
                **{f"model:{name}": _model(name) for name in SERVED_MODELS}}
    checks = {name: "ok" if error is None else error for name, error in problems.items()}
    if any(error is not None for error in problems.values()):
        return {"status": "unavailable", "checks": checks}, 503, {"Retry-After": "5"}
    return {"status": "ready", "checks": checks}
