"""The OpenAPI 3.1 document of the API, written by hand to match the views (the tests run
the whole API against it with schemathesis)."""

from sieve.config import ARCHS, MODELS, OPTIMIZERS
from sieve.models import PIPELINES, STATES
from workers.runs import WEIGHTS

NULLABLE_STRING = {"type": ["string", "null"]}
NULLABLE_NUMBER = {"type": ["number", "null"]}
TIME = {"type": "string", "format": "date-time"}
RETRY_AFTER = {"Retry-After": {"description": "seconds to wait before trying again",
                               "schema": {"type": "string"}}}


def ref(name: str) -> dict:
    """A reference to a schema of the document."""
    return {"$ref": f"#/components/schemas/{name}"}


def problem(description: str, retry: bool = False) -> dict:
    """An error answer: problem details, with Retry-After where the client should wait."""
    answer = {"description": description,
              "content": {"application/problem+json": {"schema": ref("Problem")}}}
    if retry:
        answer["headers"] = RETRY_AFTER
    return answer


def ok(schema: str | dict, description: str = "OK", status: str = "200", **extra) -> dict:
    """A JSON success answer."""
    body = ref(schema) if isinstance(schema, str) else schema
    return {status: {"description": description,
                     "content": {"application/json": {"schema": body}}, **extra}}


def authed(responses: dict, *codes: str) -> dict:
    """Answers of an operation behind a token: 401, 403 and 429 besides its own."""
    errors = {"400": problem("a malformed request"),
              "401": problem("no token, an unknown one or a revoked one"),
              "403": problem("the token lacks the scope, or the user is not an administrator"),
              "404": problem("no such resource (or not the token owner's)"),
              "409": problem("the resource's state forbids it"),
              "413": problem("too large: too many images, too many bytes or pixels"),
              "415": problem("not multipart/form-data or JSON as required, or not an image"),
              "422": problem("well-formed but not usable; the detail says why"),
              "429": problem("the token's rate limit is spent", retry=True),
              "503": problem("the queue is too deep or unreachable", retry=True)}
    return {**responses, **{code: errors[code] for code in ("401", "403", "429", *codes)}}


PREDICTION_ID = {"name": "prediction_id", "in": "path", "required": True,
                 "schema": {"type": "string"}}
RUN_ID = {"name": "run_id", "in": "path", "required": True, "schema": {"type": "string"}}
MODEL_NAME = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
JSON_BODY = {"content": {"application/json": {"schema": ref("AliasChange")}}}

SCHEMAS = {
    "Problem": {"type": "object", "required": ["type", "title", "status", "detail"],
                "properties": {"type": {"type": "string"}, "title": {"type": "string"},
                               "status": {"type": "integer"}, "detail": {"type": "string"}}},
    "Prediction": {
        "type": "object",
        "required": ["id", "state", "pipeline", "created_at", "updated_at", "links"],
        "properties": {
            "id": {"type": "string"}, "state": {"enum": list(STATES)},
            "pipeline": {"enum": list(PIPELINES)}, "filename": {"type": "string"},
            "reason": NULLABLE_STRING, "filter_score": NULLABLE_NUMBER,
            "filter_threshold": NULLABLE_NUMBER, "label": NULLABLE_STRING,
            "probability": NULLABLE_NUMBER,
            "top_k": {"type": ["array", "null"], "items": {"type": "object"}},
            "model_versions": {"type": "object"}, "created_at": TIME, "updated_at": TIME,
            "finished_at": {"type": ["string", "null"], "format": "date-time"},
            "links": {"type": "object", "required": ["self", "events", "cancel"],
                      "properties": {k: {"type": "string"}
                                     for k in ("self", "events", "cancel")}}}},
    "Submission": {"type": "object", "required": ["items"],
                   "properties": {"items": {"type": "array", "minItems": 1,
                                            "items": ref("Prediction")}}},
    "PredictionPage": {"type": "object", "required": ["items", "next_cursor"],
                       "properties": {"items": {"type": "array", "items": ref("Prediction")},
                                      "next_cursor": NULLABLE_STRING}},
    "TrainingParams": {
        "type": "object", "additionalProperties": False,
        "properties": {
            "model": {"enum": list(MODELS)}, "data_dir": {"type": "string", "minLength": 1},
            "data_url": {"type": "string", "minLength": 1},
            "epochs": {"type": "integer", "minimum": 1, "maximum": 1000},
            "optimizer": {"enum": list(OPTIMIZERS)},
            "lr": {"type": "number", "exclusiveMinimum": 0, "maximum": 10},
            "seed": {"type": "integer", "minimum": 0, "maximum": 2**32 - 1},
            "subset": {"type": "integer", "minimum": 1},
            "time_limit": {"type": "number", "exclusiveMinimum": 0},
            "width": {"type": "integer", "minimum": 1, "maximum": 256},
            "batch_size": {"type": "integer", "minimum": 1, "maximum": 4096},
            "arch": {"enum": list(ARCHS)},
            "weights": {"type": "string", "pattern": WEIGHTS.pattern},
            "freeze_backbone": {"type": "boolean"},
            "image_size": {"type": "integer", "minimum": 8, "maximum": 1024},
            "promote": {"type": "boolean"}}},
    "TrainingRun": {
        "type": "object", "required": ["id", "model", "params", "state", "created_at"],
        "properties": {
            "id": {"type": "string"}, "model": {"type": "string"},
            "params": {"type": "object"},
            "state": {"enum": ["queued", "running", "done", "failed", "cancelled"]},
            "reason": NULLABLE_STRING, "cancel_requested": {"type": "boolean"},
            "progress": {"type": "object"}, "curve": {"type": "array"},
            "history": {"type": "array"}, "version": NULLABLE_STRING,
            "metrics": {"type": ["object", "null"]}, "promoted": NULLABLE_STRING,
            "worker": NULLABLE_STRING, "created_at": TIME,
            "warning": {"type": "string", "description": "a queued run's: no worker "
                        "listens on the training queue, so it waits until one starts"}}},
    "TrainingRunList": {"type": "object", "required": ["items"],
                        "properties": {"items": {"type": "array", "items": ref("TrainingRun")}}},
    "ModelList": {"type": "object", "required": ["items"], "properties": {"items": {
        "type": "array", "items": {
            "type": "object", "required": ["name", "served", "aliases", "versions"],
            "properties": {"name": {"type": "string"}, "served": NULLABLE_STRING,
                           "aliases": {"type": "object"},
                           "workers": {"type": "array", "items": ref("WorkerServing")},
                           "on_every_worker": {"type": ["boolean", "null"]},
                           "versions": {"type": "array", "items": {
                               "type": "object", "required": ["version"]}}}}}}},
    "Model": {"type": "object", "required": ["name", "version", "aliases", "card", "history"],
              "properties": {"name": {"type": "string"}, "version": {"type": "string"},
                             "aliases": {"type": "array", "items": {"type": "string"}},
                             "card": {"type": "object"}, "history": {"type": "array"}}},
    "AliasChange": {"type": "object", "properties": {
        "alias": {"type": "string", "default": "production"}, "version": {"type": "string"},
        "note": {"type": "string"}}},
    "Alias": {"type": "object", "required": ["name", "alias", "version", "previous"],
              "properties": {"name": {"type": "string"}, "alias": {"type": "string"},
                             "version": {"type": "string"},
                             "previous": {"type": "array", "items": {"type": "string"}},
                             "updated": {"type": "string"}, "by": NULLABLE_STRING}},
    "WebhookDeliveries": {
        "type": "object", "required": ["url", "events", "deliveries"],
        "properties": {
            "url": NULLABLE_STRING, "events": {"enum": ["final", "all", None]},
            "deliveries": {"type": "array", "items": {
                "type": "object",
                "required": ["webhook_id", "type", "url", "state", "attempts"],
                "properties": {
                    "webhook_id": {"type": "string"}, "type": {"type": "string"},
                    "url": {"type": "string"},
                    "state": {"enum": ["pending", "delivered", "failed"]},
                    "next_attempt_at": NULLABLE_STRING, "created_at": TIME,
                    "finished_at": NULLABLE_STRING,
                    "attempts": {"type": "array", "items": {
                        "type": "object", "required": ["number", "at", "outcome"],
                        "properties": {
                            "number": {"type": "integer"}, "at": TIME,
                            "seconds": {"type": "number"}, "outcome": {"type": "string"},
                            "status_code": {"type": ["integer", "null"]},
                            "error": NULLABLE_STRING}}}}}}}},
    "Health": {"type": "object", "required": ["status"],
               "properties": {"status": {"type": "string"},
                              "checks": {"type": "object",
                                         "additionalProperties": {"type": "string"}},
                              "workers": {"type": "object", "additionalProperties": {
                                  "type": "array", "items": ref("WorkerServing")}},
                              "warnings": {"type": "array", "items": {"type": "string"}}}},
    "WorkerServing": {
        "type": "object", "required": ["worker", "version"],
        "description": "What one serving worker process reports it serves of a model.",
        "properties": {"worker": {"type": "string"}, "version": NULLABLE_STRING,
                       "since": NULLABLE_STRING, "updated": NULLABLE_STRING,
                       "queues": {"type": "array", "items": {"type": "string"}},
                       "refused": {"type": "object", "description": "the version it could "
                                   "not load, and why; it serves `version` meanwhile"}}},
}
