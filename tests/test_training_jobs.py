"""Training jobs as deployed: real training and serving worker processes, a real Redis,
S3 on moto's server. The end-to-end run goes through the JSON API; the others call
workers.runs.submit_run, which the API calls. Every wait has a timeout."""

import boto3
import pytest

from bench.processes import wait_for
from sieve import registry
from sieve.models import CANCELLED, DONE, FAILED, RUNNING
from sieve.store import ModelStore, open_store
from tests.stores import copy_version
from workers.client import submit
from workers.runs import cancel_run, get_run, submit_run

pytestmark = pytest.mark.slow

QUICK = {"model": "classifier", "subset": 1000, "epochs": 1, "width": 4, "optimizer": "adam"}
LONG = {**QUICK, "subset": 2000, "epochs": 200, "batch_size": 32}


def _finished_run(db, run_id: str, timeout: float = 120, stale_after: float = 60):
    return wait_for(lambda: (r := get_run(db, run_id, stale_after)).final and r, timeout,
                    f"training run {run_id} to end")


def _training_steps(db, run_id: str, timeout: float = 60):
    """Wait until the worker reports training steps."""
    return wait_for(lambda: (r := get_run(db, run_id)).state == RUNNING
                    and (r.progress or {}).get("step", 0) > 2 and r, timeout,
                    f"training run {run_id} to report steps")


def _served_version(celery_app, db, data: bytes) -> str:
    """The classifier version that answers a new prediction."""
    pid = submit(celery_app, db, data, "image/png", "classifier").id
    done = wait_for(lambda: (p := db.get_prediction(pid)).final and p, 60, f"prediction {pid}")
    assert done.state == DONE, done.reason
    return done.model_versions["classifier"]


def test_train_on_a_worker_publish_to_s3_promote_and_serve(
        start_worker, celery_app, db, s3_store_url, s3_env, trained_store, known_images,
        make_api_app, make_user):
    store = open_store(s3_store_url)
    copy_version(trained_store, store, "classifier")
    registry.promote("classifier", "v1", store=store)
    env = {**s3_env, "MODEL_STORE_URL": s3_store_url, "SIEVE_MODEL_RELOAD_INTERVAL": "0.5",
           "SIEVE_TRAINING_HEARTBEAT": "0.5"}
    training = start_worker("trainer", queues="training", **env)
    start_worker("server", **env)
    assert "concurrency: 1 (thread)" in training.log()  # one training at a time
    data = known_images[0][0]
    assert _served_version(celery_app, db, data) == "v1"

    app = make_api_app(MODEL_STORE_URL=s3_store_url)
    admin = make_user(app, scopes=("predict", "train"), admin=True)
    api = app.test_client()
    answer = api.post("/api/v1/training-runs", json=QUICK, headers=admin.headers)
    assert answer.status_code == 202, answer.get_json()
    done = _finished_run(db, answer.get_json()["id"])
    assert done.state == DONE, done.reason
    assert done.version == "v2" and done.worker.startswith("trainer@")
    assert done.progress["step"] == done.progress["steps"] and done.history
    assert "epoch 1: train loss" in done.log and "published classifier v2 to s3://" in done.log
    followed = api.get(answer.headers["Location"], headers=admin.headers).get_json()
    assert followed["state"] == DONE and followed["version"] == "v2"
    s3 = boto3.client("s3", endpoint_url=s3_env["AWS_ENDPOINT_URL"])
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=store.bucket,
                                                 Prefix="models/classifier/v2/")["Contents"]}
    assert {"models/classifier/v2/model.pt", "models/classifier/v2/MANIFEST.json"} <= keys
    assert _served_version(celery_app, db, data) == "v1"  # published is not promoted

    promoted = api.post("/api/v1/models/classifier/promote", json={"version": "v2"},
                        headers=admin.headers)
    assert promoted.status_code == 200, promoted.get_json()
    wait_for(lambda: _served_version(celery_app, db, data) == "v2", 30,
             "a prediction served by the promoted version")
    assert api.post("/api/v1/models/classifier/rollback", json={},
                    headers=admin.headers).status_code == 200
    wait_for(lambda: _served_version(celery_app, db, data) == "v1", 30,
             "a prediction served by the version rolled back to")


def test_cancel_then_kill_the_training_worker_mid_run(start_worker, celery_app, db, tmp_path):
    store = ModelStore(tmp_path / "store")
    worker = start_worker("trainer", queues="training", MODEL_STORE_URL=str(store.root),
                          SIEVE_TRAINING_HEARTBEAT="0.5")

    cancelled = submit_run(celery_app, db, LONG)
    _training_steps(db, cancelled.id)
    assert cancel_run(celery_app, db, cancelled.id).cancel_requested
    ended = _finished_run(db, cancelled.id, timeout=30)
    assert ended.state == CANCELLED and "nothing was published" in ended.reason
    assert store.versions("classifier") == []
    assert not list((store.root / "classifier").glob(".staging-*"))

    doomed = submit_run(celery_app, db, LONG)
    _training_steps(db, doomed.id)
    worker.kill()
    failed = _finished_run(db, doomed.id, timeout=30, stale_after=3)
    assert failed.state == FAILED and "stopped sending heartbeats" in failed.reason
    assert store.versions("classifier") == []
