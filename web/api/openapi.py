"""`/api/v1/openapi.json`, the OpenAPI 3.1 document, and `/api/v1/docs`, a page that lists
its operations (served from here: no assets from elsewhere)."""

from flask import current_app, render_template_string

from web.api import bp
from web.api.spec import (
    JSON_BODY,
    MODEL_NAME,
    PREDICTION_ID,
    RETRY_AFTER,
    RUN_ID,
    SCHEMAS,
    authed,
    ok,
    ref,
)
from web.api.tokens import PREDICT, SCOPES, TRAIN

V1 = "/api/v1"
LOCATION = {"Location": {"description": "where to follow it", "schema": {"type": "string"}}}
UPLOAD = {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["image"],
    "properties": {"image": {"type": "array", "items": {"type": "string", "format": "binary"},
                             "description": "one or more images (field repeated)"},
                   "pipeline": {"enum": ["filter", "classifier"], "default": "filter"},
                   "webhook": {"type": "string", "format": "uri",
                               "description": "where to post the predictions' events"},
                   "webhook_events": {"enum": ["final", "all"], "default": "final"}}}}}}
EVENTS = {"200": {"description": "Server-Sent Events: `id` the event number, `event` the "
                                 "state, `data` the prediction as JSON",
                  "content": {"text/event-stream": {"schema": {"type": "string"}}}}}
ADMIN = "Needs the `train` scope and an administrator's account."


def op(summary: str, responses: dict, scopes=(PREDICT,), **extra) -> dict:
    """One operation behind a bearer token."""
    return {"summary": summary, "security": [{"bearer": list(scopes)}],
            "responses": responses, **extra}


def wait() -> dict:
    """The `wait` query parameter of a long poll."""
    return {"name": "wait", "in": "query",
            "description": "seconds to wait for a final state (default: 0)",
            "schema": {"type": "number", "minimum": 0,
                       "maximum": current_app.config["SIEVE_MAX_WAIT_SECONDS"]}}


def paths() -> dict:
    """Every path of the API and of the health checks."""
    pid, rid, name = [PREDICTION_ID], [RUN_ID], [MODEL_NAME]
    return {
        f"{V1}/predictions": {
            "post": op("Submit images; with `wait`, answered once all are final",
                       authed({**ok("Submission", "accepted", "202", headers={
                           **LOCATION, **RETRY_AFTER}),
                           **ok("Submission", "all final within `wait`", "201",
                                headers=LOCATION)},
                           "400", "409", "413", "415", "422", "503"),
                       requestBody=UPLOAD, parameters=[
                           {"name": "Idempotency-Key", "in": "header",
                            "schema": {"type": "string"}}, wait()]),
            "get": op("List your predictions, newest first; or those named by `id`, with "
                      "`wait` once all are final", authed(ok("PredictionPage"), "400", "404"),
                      parameters=[
                          {"name": "state", "in": "query", "schema": {"enum": list(
                              SCHEMAS["Prediction"]["properties"]["state"]["enum"])}},
                          {"name": "limit", "in": "query",
                           "schema": {"type": "integer", "minimum": 1, "maximum": 100}},
                          {"name": "cursor", "in": "query", "schema": {"type": "string"}},
                          {"name": "id", "in": "query", "style": "form", "explode": True,
                           "description": "prediction ids (repeated), instead of a page",
                           "schema": {"type": "array", "items": {"type": "string"},
                                      "maxItems": 100}},
                          wait()])},
        f"{V1}/predictions/{{prediction_id}}": {
            "get": op("One prediction; with `wait`, once it is final (a long poll)",
                      authed(ok("Prediction"), "400", "404"), parameters=[*pid, wait()])},
        f"{V1}/predictions/{{prediction_id}}/events": {
            "get": op("Its state changes as Server-Sent Events", authed(EVENTS, "400", "404"),
                      parameters=[*pid, {"name": "Last-Event-ID", "in": "header",
                                         "schema": {"type": "string"}}])},
        f"{V1}/predictions/{{prediction_id}}/cancel": {
            "post": op("Cancel a prediction", authed(ok("Prediction"), "404", "409"),
                       parameters=pid)},
        f"{V1}/predictions/{{prediction_id}}/webhook": {
            "get": op("Its webhook and the deliveries, with every attempt",
                      authed(ok("WebhookDeliveries"), "404"), parameters=pid)},
        f"{V1}/training-runs": {
            "post": op("Submit a training run", authed(
                ok("TrainingRun", "accepted", "202", headers={**LOCATION, **RETRY_AFTER}),
                "400", "415", "422", "503"), (TRAIN,), description=ADMIN,
                requestBody={"content": {"application/json": {"schema": ref(
                    "TrainingParams")}}}),
            "get": op("The newest training runs", authed(ok("TrainingRunList")), (TRAIN,),
                      description=ADMIN)},
        f"{V1}/training-runs/{{run_id}}": {
            "get": op("One training run", authed(ok("TrainingRun"), "404"), (TRAIN,),
                      parameters=rid, description=ADMIN)},
        f"{V1}/training-runs/{{run_id}}/log": {
            "get": op("A run's log", authed({"200": {"description": "the log", "content": {
                "text/plain": {"schema": {"type": "string"}}}}}, "404"), (TRAIN,),
                parameters=rid, description=ADMIN)},
        f"{V1}/training-runs/{{run_id}}/cancel": {
            "post": op("Cancel a training run", authed(ok("TrainingRun"), "404", "409"),
                       (TRAIN,), parameters=rid, description=ADMIN)},
        f"{V1}/models": {"get": op("Models, versions and aliases", authed(ok("ModelList")),
                                   SCOPES)},
        f"{V1}/models/{{name}}": {
            "get": op("The served version's card and the alias history",
                      authed(ok("Model"), "404"), SCOPES, parameters=name)},
        f"{V1}/models/{{name}}/promote": {
            "post": op("Point an alias at a version", authed(ok("Alias"), "400", "404", "415",
                                                             "422"),
                       (TRAIN,), parameters=name, requestBody=JSON_BODY, description=ADMIN)},
        f"{V1}/models/{{name}}/rollback": {
            "post": op("Return an alias to its previous version", authed(
                ok("Alias"), "400", "404", "409", "415", "422"), (TRAIN,), parameters=name,
                requestBody=JSON_BODY, description=ADMIN)},
        "/healthz": {"get": {"summary": "Alive", "security": [], "responses": ok("Health")}},
        "/readyz": {"get": {"summary": "Broker, database and models reachable",
                            "security": [], "responses": {
                                **ok("Health"), "503": {"description": "not ready", "content": {
                                    "application/json": {"schema": ref("Health")}}}}}},
    }


def document() -> dict:
    """The OpenAPI document."""
    return {"openapi": "3.1.0",
            "info": {"title": "Sieve API", "version": "1.0.0",
                     "description": "Image classification behind a filter. See docs/api.md."},
            "servers": [{"url": "/"}], "paths": paths(),
            "components": {"schemas": SCHEMAS, "securitySchemes": {"bearer": {
                "type": "http", "scheme": "bearer",
                "description": f"an API token; scopes: {', '.join(SCOPES)}"}}}}


@bp.get("/openapi.json")
def openapi():
    """The OpenAPI 3.1 document of this API."""
    return document()


PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>{{ doc.info.title }}</title>
<link rel="stylesheet" href="{{ url_for('static', filename='api-docs.css') }}"></head><body>
<h1>{{ doc.info.title }} {{ doc.info.version }}</h1><p>{{ doc.info.description }}
The machine-readable document: <a href="openapi.json">openapi.json</a>.</p>
{% for path, item in doc.paths.items() %}{% for method, o in item.items() %}
<h2><code>{{ method|upper }} {{ path }}</code>: {{ o.summary }}</h2>
{% if o.description %}<p>{{ o.description }}</p>{% endif %}
<p>Scopes: {{ (o.security[0].bearer|join(" or ")) if o.security else "none" }}.
Answers: {% for code, r in o.responses.items() %}<code>{{ code }}</code> {{ r.description
}}{{ "; " if not loop.last else "." }}{% endfor %}</p>{% endfor %}{% endfor %}
</body></html>"""


@bp.get("/docs")
def docs():
    """A page that lists the operations of the OpenAPI document."""
    return render_template_string(PAGE, doc=document())
