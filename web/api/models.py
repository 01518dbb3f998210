"""The model registry: list models and their versions, with the version each serving
worker reports (any token); promote and roll back aliases (the `train` scope and an
administrator)."""

import redis
from flask import current_app, g

from sieve.modelchanges import by_model, read_reports
from sieve.registry import history, list_models, promote, rollback, show
from sieve.store import NAME_PATTERN, PRODUCTION, Store, StoreError, open_store
from web.api import bp
from web.api.errors import fail
from web.api.tokens import TRAIN, require_admin, require_token
from web.api.training import json_body
from web.services import services


def store() -> Store:
    """The model store (MODEL_STORE_URL), opened once per app; its promotions and rollbacks
    are announced to the serving workers on the app's Redis."""
    if "sieve_model_store" not in current_app.extensions:
        current_app.extensions["sieve_model_store"] = open_store(
            current_app.config.get("MODEL_STORE_URL"), services().settings.redis_url)
    return current_app.extensions["sieve_model_store"]


def workers_serving() -> dict[str, list[dict]] | None:
    """Per model, what each live serving worker reports it serves; None when Redis cannot
    be read."""
    try:
        return by_model(read_reports(services().events.redis))
    except redis.RedisError:
        return None


def with_workers(models: list[dict]) -> list[dict]:
    """The models of `list_models` with their workers' reports: `workers` (one line per
    worker process: version, since, a refused version) and `on_every_worker` (whether
    every reporting worker serves the served version; None when none reports)."""
    reports = workers_serving()
    answer = []
    for model in models:
        lines = (reports or {}).get(model["name"], [])
        everywhere = (all(line.get("version") == model["served"] for line in lines)
                      if lines else None)
        answer.append({**model, "workers": lines, "on_every_worker": everywhere,
                       **({"workers_unknown": "Redis cannot be read"}
                          if reports is None else {})})
    return answer


def _model(name: str) -> str:
    """A published model's name, or 404."""
    if not NAME_PATTERN.match(name) or name not in store().models():
        fail(404, f"no model {name}")
    return name


@bp.get("/models")
@require_token()
def models():
    """Every model: its versions with their headline metric, aliases, the served one, and
    the version each serving worker reports."""
    return {"items": with_workers(list_models(store()))}


@bp.get("/models/<name>")
@require_token()
def model(name: str):
    """The served version's model card, and the model's alias history."""
    try:
        return {**show(_model(name), None, store()), "history": history(name, store())}
    except StoreError as exc:
        fail(404, str(exc))


def _alias_body() -> tuple[str, dict]:
    """The alias named in the body (production by default), checked."""
    body = json_body()
    alias = body.get("alias", PRODUCTION)
    if not isinstance(alias, str) or not NAME_PATTERN.match(alias):
        fail(422, "alias must be lower-case letters, digits, - and _")
    return alias, body


@bp.post("/models/<name>/promote")
@require_token(TRAIN)
def promote_model(name: str):
    """Point an alias (production by default) at a published version."""
    require_admin()
    _model(name)
    alias, body = _alias_body()
    version = body.get("version")
    if not isinstance(version, str) or version not in store().versions(name):
        fail(422, f"version must name a published version of {name}: "
             f"{', '.join(store().versions(name))}")
    note = body.get("note") if isinstance(body.get("note"), str) else None
    entry = promote(name, version, alias, store(), by=g.api_user.email, note=note)
    return {"name": name, "alias": alias, **entry}


@bp.post("/models/<name>/rollback")
@require_token(TRAIN)
def rollback_model(name: str):
    """Return an alias to the version it pointed at before its last promotion."""
    require_admin()
    _model(name)
    alias, _ = _alias_body()
    try:
        entry = rollback(name, alias, store(), by=g.api_user.email)
    except StoreError as exc:
        fail(409, str(exc))
    return {"name": name, "alias": alias, **entry}
