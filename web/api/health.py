"""Health checks at the root: `/healthz` (the process answers) and `/readyz` (the broker,
the database and a served version of each model are reachable; with what each serving
worker reports it serves, and a warning for each version a worker refused to load). No
token needed."""

import redis
from flask import Blueprint
from sqlalchemy.exc import SQLAlchemyError

from sieve import redisconn
from sieve.store import StoreError
from web.api.models import store, workers_serving
from web.services import services

health = Blueprint("health", __name__)

SERVED_MODELS = ("filter", "classifier")


@health.get("/healthz")
def healthz():
    """Alive: the process answers requests."""
    return {"status": "ok"}


def _broker() -> str | None:
    """None when the broker answers a ping, else why not."""
    try:
        redisconn.connect(services().settings.broker_url).ping()
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
    workers = workers_serving() if problems["broker"] is None else None
    answer = {"checks": checks, "workers": workers or {}, "warnings": refusals(workers or {})}
    if any(error is not None for error in problems.values()):
        return {"status": "unavailable", **answer}, 503, {"Retry-After": "5"}
    return {"status": "ready", **answer}


def refusals(workers: dict[str, list[dict]]) -> list[str]:
    """A line for each version a worker refused to load (it goes on serving the one it
    has, so the service stays ready)."""
    return [f"{line['worker']} could not load {name} {line['refused']['version']} and still "
            f"serves {line.get('version') or 'nothing'}: {line['refused']['error']}"
            for name, lines in sorted(workers.items()) for line in lines
            if line.get("refused")]
