"""A promotion or a rollback reaches every serving worker at once.

In-process: the store announces changes of the served version (and only those), and a
reloader switches on its timer while predictions go on. As deployed: a `-Q filter` and a
`-Q classify` worker on a model store on moto's S3 server, promotions and rollbacks
through the API; every wait has a timeout.
"""

import io
import json
import threading

import pytest
import redis

from bench.processes import wait_for
from sieve import registry
from sieve.modelchanges import CHANNEL, read_reports
from sieve.store import CARD, MANIFEST, ModelStore, StoreError, open_store
from tests.fixtures_web import csrf_token
from tests.stores import copy_version
from workers.reloading import Reloader
from workers.serving import ServedModels

MODELS, PREDICTIONS = "/api/v1/models", "/api/v1/predictions"


def _announcements(redis_url: str):
    """A subscription to the announcements channel, confirmed."""
    pubsub = redis.Redis.from_url(redis_url).pubsub()
    pubsub.subscribe(CHANNEL)
    wait_for(lambda: (pubsub.get_message(timeout=0.1) or {}).get("type") == "subscribe", 5,
             "the subscription")
    return pubsub


def _received(pubsub) -> list[dict]:
    """The announcements that arrived (waiting up to a second for the first)."""
    got, message = [], pubsub.get_message(timeout=1.0)
    while message is not None:
        got.append(json.loads(message["data"]))
        message = pubsub.get_message(timeout=0.2)
    return got


def test_the_store_announces_each_change_of_the_served_version(trained_store, tmp_path,
                                                               redis_server):
    store = open_store(str(tmp_path / "store"), redis_server.url)
    pubsub = _announcements(redis_server.url)
    copy_version(trained_store, store, "classifier")
    assert _received(pubsub) == [{"model": "classifier", "version": "v1"}]  # no alias yet
    registry.promote("classifier", "v1", store=store)
    assert _received(pubsub) == []  # still v1: nothing to switch
    copy_version(trained_store, store, "classifier")
    assert _received(pubsub) == []  # production pins v1
    registry.promote("classifier", "v2", alias="staging", store=store)
    assert _received(pubsub) == []  # staging serves nothing
    registry.promote("classifier", "v2", store=store)
    assert _received(pubsub) == [{"model": "classifier", "version": "v2"}]
    registry.rollback("classifier", store=store)
    assert _received(pubsub) == [{"model": "classifier", "version": "v1"}]
    pubsub.close()


def test_the_timer_switches_while_predictions_go_on_and_refuses_a_damaged_version(
        trained_store, known_images, tmp_path):
    store = ModelStore(tmp_path / "store")
    for _ in range(3):
        copy_version(trained_store, store, "classifier")
    registry.promote("classifier", "v1", store=store)
    models = ServedModels(str(store.root))
    data = known_images[0][0]
    assert models.classify_many([data], 10, 3, ["k"])[0]["version"] == "v1"
    reloader = Reloader(models, "test", None, interval=0.2, names=("classifier",)).start()
    try:
        # No prediction is needed for the timer to switch.
        registry.promote("classifier", "v2", store=store)
        wait_for(lambda: models.serving()["classifier"] == "v2", 30, "the switch to v2")

        registry.promote("classifier", "v3", store=store)
        answers, errors, stop = [], [], threading.Event()

        def predict():
            while not stop.is_set():
                try:
                    answers.append(models.classify_many([data], 10, 3, ["k"])[0]["version"])
                except Exception as exc:  # noqa: BLE001 - any failure is what the test counts
                    errors.append(exc)

        threads = [threading.Thread(target=predict) for _ in range(4)]
        for thread in threads:
            thread.start()
        try:
            wait_for(lambda: answers.count("v3") > 20, 30, "predictions by v3")
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=10)
        assert not errors
        assert set(answers) <= {"v2", "v3"} and answers[-1] == "v3"

        # A damaged version is refused: the worker goes on serving the one it has.
        damaged = copy_version(trained_store, store, "classifier")
        (store.root / "classifier" / damaged / "model.pt").write_bytes(b"damaged")
        registry.promote("classifier", damaged, store=store)
        wait_for(lambda: "classifier" in reloader.problems, 30, "the refusal")
        assert "damaged" in reloader.problems["classifier"]["error"]
        assert reloader.state()["classifier"]["version"] == "v3"
        assert reloader.state()["classifier"]["refused"]["version"] == damaged
        assert models.classify_many([data], 10, 3, ["k"])[0]["version"] == "v3"
        with pytest.raises(StoreError, match="damaged"):
            models.switch("classifier", damaged)
    finally:
        reloader.stop()


# --- As deployed: separate filter and classifier workers, the store on S3 -------------


@pytest.fixture
def s3_models(s3_store_url, trained_store):
    """An S3 store with filter v1 and classifier v1 and v2, production on v1 of both."""
    store = open_store(s3_store_url)
    store.announcer = None  # no worker runs yet: nothing to tell
    copy_version(trained_store, store, "filter")
    for _ in range(2):
        copy_version(trained_store, store, "classifier")
    registry.promote("filter", "v1", store=store)
    registry.promote("classifier", "v1", store=store)
    return store


@pytest.fixture
def deployed(s3_models, s3_store_url, start_worker, make_api_app, make_user):
    """deployed(interval): a filter worker, a classifier worker and the API on the S3
    store; returns (app client, admin user, workers)."""

    def start(interval: str):
        env = {"MODEL_STORE_URL": s3_store_url, "SIEVE_MODEL_RELOAD_INTERVAL": interval}
        workers = [start_worker("filterer", queues="filter", **env),
                   start_worker("classifier", queues="classify", **env)]
        app = make_api_app(MODEL_STORE_URL=s3_store_url)
        admin = make_user(app, scopes=("predict", "train"), admin=True)
        return app.test_client(), admin, workers

    return start


def _workers(client, admin, name: str) -> list[dict]:
    """The lines of `GET /api/v1/models` for `name`'s workers."""
    items = client.get(MODELS, headers=admin.headers).get_json()["items"]
    return next(m for m in items if m["name"] == name)["workers"]


def _all_serve(client, admin, name: str, version: str, count: int = 2) -> bool:
    """Whether `count` workers report serving `version` of `name`."""
    lines = _workers(client, admin, name)
    return len(lines) == count and all(line["version"] == version for line in lines)


def _predict(client, admin, data: bytes) -> dict:
    """One prediction through the API, followed to its end."""
    answer = client.post(PREDICTIONS, headers=admin.headers,
                         data={"image": [(io.BytesIO(data), "0.png")]})
    assert answer.status_code == 202, answer.get_data(as_text=True)
    location = answer.headers["Location"]
    return wait_for(lambda: (p := client.get(location, headers=admin.headers).get_json())
                    ["state"] in ("done", "rejected", "failed") and p, 60,
                    "the prediction to finish")


@pytest.mark.slow
def test_a_promotion_and_a_rollback_serve_the_very_next_prediction(deployed, known_images):
    # The timer would not fire during the test: what switches is the announcement.
    client, admin, _ = deployed("3600")
    data = known_images[0][0]
    wait_for(lambda: _all_serve(client, admin, "classifier", "v1"), 30, "reports of v1")
    assert _predict(client, admin, data)["model_versions"]["classifier"] == "v1"

    promoted = client.post(f"{MODELS}/classifier/promote", headers=admin.headers,
                           json={"version": "v2"})
    assert promoted.status_code == 200, promoted.get_data(as_text=True)
    wait_for(lambda: _all_serve(client, admin, "classifier", "v2"), 60,
             "both workers to report v2")
    done = _predict(client, admin, data)
    assert done["state"] == "done" and done["model_versions"]["classifier"] == "v2"
    models = client.get(MODELS, headers=admin.headers).get_json()["items"]
    classifier = next(m for m in models if m["name"] == "classifier")
    assert classifier["served"] == "v2" and classifier["on_every_worker"] is True
    assert {line["worker"].split("@")[0] for line in classifier["workers"]} == {
        "filterer", "classifier"}

    back = client.post(f"{MODELS}/classifier/rollback", headers=admin.headers, json={})
    assert back.status_code == 200 and back.get_json()["version"] == "v1"
    wait_for(lambda: _all_serve(client, admin, "classifier", "v1"), 60,
             "both workers to report v1 again")
    assert _predict(client, admin, data)["model_versions"]["classifier"] == "v1"


@pytest.mark.slow
def test_a_worker_that_missed_the_announcement_switches_on_its_timer(
        deployed, s3_store_url, redis_server, known_images):
    client, admin, workers = deployed("2")
    wait_for(lambda: _all_serve(client, admin, "classifier", "v1"), 30, "reports of v1")
    redis_server.stop()
    # Promoted from the command line while Redis is down: the announcement is lost.
    store = open_store(s3_store_url, redis_server.url)
    assert store.announcer.announce("classifier", "v2") is False
    registry.promote("classifier", "v2", store=store, by="cli")
    redis_server.start()
    # No prediction is sent: each worker switches on its own timer.
    wait_for(lambda: all("serving classifier v2 (was v1)" in w.log() for w in workers),
             30, "both workers to switch to v2")
    wait_for(lambda: _all_serve(client, admin, "classifier", "v2"), 30, "reports of v2")
    assert all("Task sieve." not in w.log() for w in workers)
    assert _predict(client, admin, known_images[0][0])["model_versions"]["classifier"] == "v2"


@pytest.mark.slow
def test_a_broken_version_is_refused_and_the_old_one_keeps_serving(
        deployed, s3_models, trained_store, known_images, tmp_path):
    client, admin, workers = deployed("3600")
    wait_for(lambda: _all_serve(client, admin, "classifier", "v1"), 30, "reports of v1")
    # Published like any version, with a manifest that matches: the weights are garbage.
    source = trained_store.open("classifier")
    broken = tmp_path / "model.pt"
    broken.write_bytes(b"not a checkpoint" * 64)
    files = {p.name: p for p in source.iterdir() if p.name not in (MANIFEST, CARD)}
    version = s3_models.publish("classifier", {**files, "model.pt": broken},
                                json.loads((source / CARD).read_text()))
    assert version == "v3"

    promoted = client.post(f"{MODELS}/classifier/promote", headers=admin.headers,
                           json={"version": "v3"})
    assert promoted.status_code == 200
    wait_for(lambda: len([line for line in _workers(client, admin, "classifier")
                          if line.get("refused", {}).get("version") == "v3"]) == 2, 60,
             "both workers to refuse v3")
    assert _all_serve(client, admin, "classifier", "v1")
    assert all("could not load classifier v3; still serving v1" in w.log() for w in workers)

    ready = client.get("/readyz")
    assert ready.status_code == 200
    warnings = ready.get_json()["warnings"]
    assert len(warnings) == 2 and all("could not load classifier v3" in w for w in warnings)

    page = client.get("/login").get_data(as_text=True)
    client.post("/login", data={"csrf_token": csrf_token(page), "email": admin.email,
                                "password": "a long enough password"})
    models_page = client.get("/models").get_data(as_text=True)
    assert 'id="workers-classifier"' in models_page
    assert "could not load v3" in models_page and "Not every serving worker" in models_page

    done = _predict(client, admin, known_images[0][0])
    assert done["state"] == "done" and done["model_versions"]["classifier"] == "v1"
    reports = read_reports(redis.Redis.from_url(workers[0].env["REDIS_URL"]))
    assert {r["worker"].split("@")[0] for r in reports} == {"filterer", "classifier"}
