"""Training runs and the model registry through the API (no training worker: runs stay
queued), on a copy of the test models so that promotions change nothing else."""

import shutil

import pytest

RUNS, MODELS = "/api/v1/training-runs", "/api/v1/models"


@pytest.fixture
def app(make_api_app, trained_store, tmp_path):
    """The app on a private copy of the model store."""
    shutil.copytree(trained_store.root, tmp_path / "models")
    return make_api_app(MODEL_STORE_URL=str(tmp_path / "models"))


@pytest.fixture
def admin(app, make_user):
    return make_user(app, scopes=("train",), admin=True)


def test_training_needs_the_train_scope_and_an_administrator(app, make_user):
    client = app.test_client()
    not_admin = make_user(app, scopes=("predict", "train"))
    predict_only_admin = make_user(app, scopes=("predict",), admin=True)
    for user in (not_admin, predict_only_admin):
        answer = client.post(RUNS, headers=user.headers, json={"epochs": 1})
        assert answer.status_code == 403 and answer.content_type == "application/problem+json"
    assert client.get(RUNS).status_code == 401


def test_submit_follow_log_list_and_cancel_a_run(app, admin):
    client = app.test_client()
    answer = client.post(RUNS, headers=admin.headers, json={"model": "filter", "epochs": 1})
    assert answer.status_code == 202
    run = answer.get_json()
    assert run["state"] == "queued" and run["params"]["epochs"] == 1
    assert answer.headers["Location"] == f"{RUNS}/{run['id']}"
    assert client.get(answer.headers["Location"], headers=admin.headers).get_json()["id"] \
        == run["id"]
    log = client.get(f"{RUNS}/{run['id']}/log", headers=admin.headers)
    assert log.status_code == 200 and log.mimetype == "text/plain"
    assert [r["id"] for r in client.get(RUNS, headers=admin.headers).get_json()["items"]] == [
        run["id"]]
    cancelled = client.post(f"{RUNS}/{run['id']}/cancel", headers=admin.headers)
    assert cancelled.get_json()["state"] == "cancelled"
    assert client.post(f"{RUNS}/{run['id']}/cancel", headers=admin.headers).status_code == 409
    for path in (f"{RUNS}/nope", f"{RUNS}/nope/log"):
        assert client.get(path, headers=admin.headers).status_code == 404
    assert client.post(f"{RUNS}/nope/cancel", headers=admin.headers).status_code == 404


@pytest.mark.parametrize(("kwargs", "status"), [
    ({"json": {"epochs": 0}}, 422), ({"json": {"colour": "red"}}, 422),
    ({"json": {"optimizer": "rmsprop"}}, 422), ({"json": [1, 2]}, 400),
    ({"json": {"weights": "/root/weights.pt"}}, 422), ({"json": {"arch": "vit_b_16"}}, 422),
    ({"data": "epochs=1", "content_type": "application/x-www-form-urlencoded"}, 415),
    ({"data": "{not json", "content_type": "application/json"}, 400),
])
def test_bad_run_parameters(app, admin, kwargs, status):
    answer = app.test_client().post(RUNS, headers=admin.headers, **kwargs)
    assert answer.status_code == status, answer.get_data(as_text=True)


def test_models_are_listed_for_any_token(app, make_user):
    client, user = app.test_client(), make_user(app)
    items = client.get(MODELS, headers=user.headers).get_json()["items"]
    assert {m["name"] for m in items} == {"classifier", "filter"}
    card = client.get(f"{MODELS}/classifier", headers=user.headers).get_json()
    assert card["version"] == "v1" and card["history"] == []
    assert client.get(f"{MODELS}/nothing", headers=user.headers).status_code == 404


def test_promote_and_roll_back(app, admin, make_user):
    client = app.test_client()
    promoted = client.post(f"{MODELS}/classifier/promote", headers=admin.headers,
                           json={"version": "v1", "alias": "staging", "note": "try it"})
    assert promoted.status_code == 200, promoted.get_data(as_text=True)
    assert promoted.get_json()["version"] == "v1"
    history = client.get(f"{MODELS}/classifier", headers=admin.headers).get_json()["history"]
    assert history[-1]["note"] == "try it" and history[-1]["by"] == admin.email
    back = client.post(f"{MODELS}/classifier/rollback", headers=admin.headers,
                       json={"alias": "staging"})
    assert back.status_code == 409  # nothing before v1
    assert client.post(f"{MODELS}/classifier/promote", headers=admin.headers,
                       json={"version": "v9"}).status_code == 422
    assert client.post(f"{MODELS}/classifier/promote", headers=admin.headers,
                       json={"version": "v1", "alias": "Not An Alias"}).status_code == 422
    assert client.post(f"{MODELS}/nothing/rollback", headers=admin.headers,
                       json={}).status_code == 404
    reader = make_user(app, scopes=("predict", "train"))
    assert client.post(f"{MODELS}/classifier/promote", headers=reader.headers,
                       json={"version": "v1"}).status_code == 403
