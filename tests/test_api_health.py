"""Health checks, the OpenAPI document and its page."""

from bench.processes import free_port


def test_healthz_and_readyz(client):
    assert client.get("/healthz").get_json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert set(ready.get_json()["checks"].values()) == {"ok"}


def test_readyz_names_what_is_missing(make_api_app, tmp_path):
    app = make_api_app(REDIS_URL=f"redis://127.0.0.1:{free_port()}/0",
                       MODEL_STORE_URL=str(tmp_path / "empty"))
    answer = app.test_client().get("/readyz")
    assert answer.status_code == 503 and answer.headers["Retry-After"]
    checks = answer.get_json()["checks"]
    assert checks["database"] == "ok"
    assert checks["broker"].startswith("the broker does not answer")
    assert "no filter has been published" in checks["model:filter"]


def test_openapi_document_lists_every_api_route(api_app, client):
    document = client.get("/api/v1/openapi.json").get_json()
    assert document["openapi"].startswith("3.1")
    routes = {rule.rule.replace("<", "{").replace(">", "}")
              for rule in api_app.url_map.iter_rules()
              if rule.endpoint.startswith(("api.", "health."))}
    routes -= {"/api/v1/openapi.json", "/api/v1/docs"}
    assert routes == set(document["paths"])


def test_docs_page_lists_the_operations_without_outside_assets(client):
    page = client.get("/api/v1/docs").get_data(as_text=True)
    assert "POST /api/v1/predictions" in page and "GET /readyz" in page
    assert "http://" not in page and "https://" not in page


def test_unknown_api_path_is_a_json_error(client):
    answer = client.get("/api/v1/nothing-here")
    assert answer.status_code == 404 and answer.is_json
