"""Training and model pages: administrators start, follow and cancel runs, promote and
roll back versions; everyone signed in sees the models and their cards."""

import re

import pytest

from tests.fixtures_web import PASSWORD, csrf_token
from web import create_app
from web.users import create_user


@pytest.fixture
def store_app(sqlite_url, redis_server, trained_store):
    """The app with the session's trained models as its model store."""
    from sieve.migrate import upgrade

    upgrade(sqlite_url)
    app = create_app({"TESTING": True, "SECRET_KEY": "test-secret-key-0123456789",
                      "DATABASE_URL": sqlite_url, "REDIS_URL": redis_server.url,
                      "MODEL_STORE_URL": str(trained_store.root)})
    with app.app_context():
        create_user("admin@example.com", PASSWORD, is_admin=True)
        create_user("user@example.com", PASSWORD)
    yield app
    app.extensions["sieve"].db.dispose()


def _login(client, email):
    page = client.get("/login").get_data(as_text=True)
    client.post("/login", data={"csrf_token": csrf_token(page), "email": email,
                                "password": PASSWORD})


def test_training_pages_are_for_administrators(store_app):
    client = store_app.test_client()
    _login(client, "user@example.com")
    assert client.get("/training").status_code == 403
    assert client.get("/models").status_code == 200  # reading the models is for everyone


def test_a_run_is_started_shown_and_cancelled(store_app):
    client = store_app.test_client()
    _login(client, "admin@example.com")
    page = client.get("/training").get_data(as_text=True)
    bad = client.post("/training", data={"csrf_token": csrf_token(page), "model": "filter",
                                         "lr": "fast"}, follow_redirects=True)
    assert "Not started" in bad.get_data(as_text=True)
    started = client.post("/training", data={"csrf_token": csrf_token(page),
                                             "model": "classifier", "epochs": "1",
                                             "subset": "200"})
    assert started.status_code == 302
    run_page = client.get(started.headers["Location"]).get_data(as_text=True)
    assert 'id="run-state">queued' in run_page and 'http-equiv="refresh"' in run_page
    cancelled = client.post(started.headers["Location"] + "/cancel",
                            data={"csrf_token": csrf_token(run_page)}, follow_redirects=True)
    assert 'id="run-state">cancelled' in cancelled.get_data(as_text=True)
    assert started.headers["Location"].rsplit("/", 1)[1][:8] in client.get(
        "/training").get_data(as_text=True)


def test_models_cards_plots_promote_and_rollback(store_app, trained_store):
    client = store_app.test_client()
    _login(client, "admin@example.com")
    models = client.get("/models").get_data(as_text=True)
    assert 'id="model-classifier"' in models and 'id="model-filter"' in models
    # Each trained model's worst upload kind (training.uploads) is on the page.
    assert models.count("uploads, worst kind:") == 2
    card = client.get("/models/classifier/v1").get_data(as_text=True)
    assert 'id="plot-curves"' in card and '"classes"' in card
    plot = client.get("/models/classifier/v1/curves.png")
    assert plot.status_code == 200 and plot.data[:4] == b"\x89PNG"
    assert client.get("/models/classifier/v9").status_code == 404
    assert client.get("/models/classifier/v1/secrets.txt").status_code == 404
    promoted = client.post("/models/classifier/promote",
                           data={"csrf_token": csrf_token(models), "version": "v1"},
                           follow_redirects=True).get_data(as_text=True)
    assert "classifier v1 is now production" in promoted
    assert trained_store.aliases("classifier") == {"production": "v1"}
    back = client.post("/models/classifier/rollback",
                       data={"csrf_token": csrf_token(promoted)}, follow_redirects=True)
    assert "no earlier version" in back.get_data(as_text=True)
    assert re.search(r"Served: <strong>v1</strong>", back.get_data(as_text=True))


@pytest.fixture
def runs_app(sqlite_url, redis_server, tmp_path):
    """The app on an empty model store, for starting runs (no models needed)."""
    from sieve.migrate import upgrade

    upgrade(sqlite_url)
    app = create_app({"TESTING": True, "SECRET_KEY": "test-secret-key-0123456789",
                      "DATABASE_URL": sqlite_url, "REDIS_URL": redis_server.url,
                      "MODEL_STORE_URL": str(tmp_path / "models")})
    with app.app_context():
        create_user("admin@example.com", PASSWORD, is_admin=True)
    yield app
    app.extensions["sieve"].db.dispose()


def test_a_backbone_run_from_the_page_takes_no_weights_path(runs_app):
    """The page starts a run with a torchvision backbone, torchvision's weights and a
    frozen backbone; weights given as a path on the worker are refused."""
    client = runs_app.test_client()
    _login(client, "admin@example.com")
    page = client.get("/training").get_data(as_text=True)
    assert 'name="arch"' in page and 'name="freeze_backbone"' in page
    refused = client.post("/training", data={
        "csrf_token": csrf_token(page), "model": "classifier", "arch": "resnet18",
        "weights": "/etc/passwd"}, follow_redirects=True)
    assert "Not started: weights=" in refused.get_data(as_text=True)
    started = client.post("/training", data={
        "csrf_token": csrf_token(page), "model": "classifier", "arch": "resnet18",
        "weights": "DEFAULT", "freeze_backbone": "y", "image_size": "96"})
    assert started.status_code == 302
    with runs_app.app_context():
        run = runs_app.extensions["sieve"].db.get_training_run(
            started.headers["Location"].rsplit("/", 1)[1])
    assert {k: run.params[k] for k in ("arch", "weights", "freeze_backbone", "image_size")} == {
        "arch": "resnet18", "weights": "DEFAULT", "freeze_backbone": True, "image_size": 96}
