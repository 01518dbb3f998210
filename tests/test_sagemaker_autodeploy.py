"""Automatic deployment on promotion: with SIEVE_SAGEMAKER_AUTODEPLOY on, each change of a
model's production version (registry command line, API, rollback) sends the deployment
task to the training queue, and a real training worker deploys the served versions to
SageMaker (moto's server, tests.moto_sagemaker)."""

import base64
import json
import logging
import shutil
import uuid

import pytest
import redis

from bench.processes import free_port, wait_for
from sieve import registry
from sieve.deployments import DEPLOY_TASK
from sieve.queues import TRAINING_QUEUE
from sieve.store import CARD, MANIFEST, ModelStore


@pytest.fixture
def store(trained_store, tmp_path) -> ModelStore:
    """A copy of the session's models (promotions here change no other test's), with a
    second classifier version."""
    copy = ModelStore(tmp_path / "models")
    shutil.copytree(trained_store.root, copy.root)
    folder = copy.open("classifier", "v1")
    files = {p.name: p for p in folder.iterdir() if p.name not in (CARD, MANIFEST)}
    assert copy.publish("classifier", files, copy.card("classifier", "v1")) == "v2"
    return copy


@pytest.fixture
def broker_env(redis_server, store, monkeypatch) -> redis.Redis:
    """This process promotes on the test Redis and the copied store; the queue is empty."""
    for name in ("REDIS_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND"):
        monkeypatch.setenv(name, redis_server.url)
    monkeypatch.setenv("MODEL_STORE_URL", str(store.root))
    client = redis.Redis.from_url(redis_server.url)
    client.delete(TRAINING_QUEUE)
    return client


def queued(client: redis.Redis) -> list[tuple[str, list]]:
    """(task name, arguments) of each message waiting on the training queue."""
    messages = [json.loads(raw) for raw in client.lrange(TRAINING_QUEUE, 0, -1)]
    return [(m["headers"]["task"], json.loads(base64.b64decode(m["body"]))[0])
            for m in messages]


def test_only_a_production_change_queues_a_deployment(broker_env, monkeypatch, capsys):
    """Off by default; with the setting on, promoting to another alias or promoting the
    version production already has sends nothing; a new production version or a rollback
    sends one task each, with the model and its new version."""
    monkeypatch.delenv("SIEVE_SAGEMAKER_AUTODEPLOY", raising=False)
    assert registry.main(["promote", "classifier", "v1"]) == 0
    assert queued(broker_env) == []
    monkeypatch.setenv("SIEVE_SAGEMAKER_AUTODEPLOY", "1")
    assert registry.main(["promote", "classifier", "v2", "--alias", "staging"]) == 0
    assert registry.main(["promote", "classifier", "v1"]) == 0
    assert queued(broker_env) == []
    assert registry.main(["promote", "classifier", "v2"]) == 0
    assert registry.main(["rollback", "classifier"]) == 0
    assert queued(broker_env) == [(DEPLOY_TASK, ["classifier", "v1"]),
                                  (DEPLOY_TASK, ["classifier", "v2"])]  # LPUSH: newest first
    capsys.readouterr()


def test_unreachable_queue_does_not_undo_the_promotion(broker_env, store, monkeypatch,
                                                      caplog):
    """The promotion is the record: when the broker cannot take the task, production still
    changes, and the log says how to deploy by hand."""
    monkeypatch.setenv("SIEVE_SAGEMAKER_AUTODEPLOY", "1")
    monkeypatch.setenv("CELERY_BROKER_URL", f"redis://127.0.0.1:{free_port()}/0")
    with caplog.at_level(logging.WARNING, logger="sieve.deployments"):
        assert registry.main(["promote", "classifier", "v2"]) == 0
    assert store.aliases("classifier")["production"] == "v2"
    assert "python -m training.sagemaker deploy" in caplog.text


def deployed(aws, endpoint: str) -> dict | None:
    """The endpoint's status, configuration and the versions its model carries; None while
    it does not exist."""
    found = aws["sm"].list_endpoints(NameContains=endpoint)["Endpoints"]
    if not any(e["EndpointName"] == endpoint for e in found):
        return None
    state = aws["sm"].describe_endpoint(EndpointName=endpoint)
    config = aws["sm"].describe_endpoint_config(EndpointConfigName=state["EndpointConfigName"])
    model = aws["sm"].describe_model(ModelName=config["ProductionVariants"][0]["ModelName"])
    tags = {t["Key"]: t["Value"]
            for t in aws["sm"].list_tags(ResourceArn=model["ModelArn"])["Tags"]}
    return {"status": state["EndpointStatus"], "config": state["EndpointConfigName"],
            "classifier": tags.get("sieve:classifier"), "filter": tags.get("sieve:filter")}


def test_promotions_deploy_through_a_training_worker(aws, broker_env, store, start_worker,
                                                     make_api_app, make_user, monkeypatch,
                                                     capsys):
    """Promote with the command line, then through the API, then roll back: each time a
    training worker deploys the served classifier, with the filter in front, to the
    endpoint, which ends InService on the new configuration."""
    endpoint = f"sieve-auto-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("SIEVE_SAGEMAKER_AUTODEPLOY", "1")
    monkeypatch.setenv("SAGEMAKER_ENDPOINT_NAME", endpoint)
    worker = start_worker("deployer", queues=TRAINING_QUEUE, MODEL_STORE_URL=str(store.root))

    def serving(version: str):
        state = deployed(aws, endpoint)
        return state if state and state["classifier"] == f"classifier {version}" else None

    assert registry.main(["promote", "classifier", "v1"]) == 0
    first = wait_for(lambda: serving("v1"), 60, "the endpoint to serve classifier v1", 0.2)
    assert first["status"] == "InService" and first["filter"] == "filter v1"

    app = make_api_app(MODEL_STORE_URL=str(store.root))
    admin = make_user(app, scopes=("train",), admin=True)
    answer = app.test_client().post("/api/v1/models/classifier/promote",
                                    json={"version": "v2"}, headers=admin.headers)
    assert answer.status_code == 200, answer.get_json()
    second = wait_for(lambda: serving("v2"), 60, "the endpoint to serve classifier v2", 0.2)
    assert second["status"] == "InService" and second["config"] != first["config"]

    assert registry.main(["rollback", "classifier"]) == 0
    third = wait_for(lambda: serving("v1"), 60, "the endpoint to serve classifier v1 again",
                     0.2)
    assert third["config"] not in (first["config"], second["config"])
    assert worker.log().count("deploying to SageMaker") == 3
    capsys.readouterr()
