"""Training runs without a broker: parameters, the record's conditional changes, and one
run executed in this process (progress, log, publish, cancel)."""

import json
import threading
import time

import pytest

from bench.processes import wait_for
from sieve import redisconn
from sieve.config import get_settings
from sieve.database import Database
from sieve.migrate import upgrade
from sieve.models import CANCELLED, DONE, FAILED, QUEUED, RUNNING
from sieve.store import ModelStore
from workers import runs, trainer
from workers.celery_app import create_celery

QUICK = {"model": "classifier", "subset": 500, "epochs": 1, "width": 4, "optimizer": "adam"}


@pytest.mark.parametrize(("params", "message"), [
    ({"model": "other"}, "out of range"),
    ({"epochs": 0}, "out of range"),
    ({"epochs": 2.5}, "is not a whole number"),
    ({"lr": "fast"}, "is not a number"),
    ({"promote": "yes"}, "is not true or false"),
    ({"epoch": 3}, "unknown parameters"),
    ({"arch": "vgg16"}, "out of range"),
    ({"weights": "/etc/passwd"}, "out of range"),
    ({"weights": "../models/classifier/v1/model.pt"}, "out of range"),
    ({"weights": "store:classifier/../../etc"}, "out of range"),
    ({"weights": "https://example.com/weights.pt"}, "out of range"),
    ({"freeze_backbone": "on"}, "is not true or false"),
    ({"image_size": 4}, "out of range"),
])
def test_bad_parameters_are_refused(params, message):
    with pytest.raises(runs.InvalidParameters, match=message):
        runs.validate(params)


def test_parameters_become_the_training_command_line():
    clean = runs.validate({"epochs": "3", "lr": 0.01, "seed": None, "promote": True})
    assert clean == {"model": "classifier", "epochs": 3, "lr": 0.01, "promote": True}
    assert runs.train_argv(clean) == ["--train", "--download-data", "--model", "classifier",
                                      "--epochs", "3", "--lr", "0.01"]


def test_backbone_parameters_become_options_and_weights_are_never_a_path():
    """arch, weights (DEFAULT or a published model), freeze_backbone and image_size reach
    the training command line; a flag only when it is on."""
    clean = runs.validate({"arch": "resnet18", "weights": "DEFAULT", "freeze_backbone": True,
                           "image_size": 96})
    assert runs.train_argv(clean) == ["--train", "--download-data", "--model", "classifier",
                                      "--arch", "resnet18", "--weights", "DEFAULT",
                                      "--freeze-backbone", "--image-size", "96"]
    clean = runs.validate({"weights": "store:classifier/production", "freeze_backbone": False})
    assert runs.train_argv(clean)[-2:] == ["--weights", "store:classifier/production"]


def test_run_record_changes_are_conditional(database_url):
    db = Database(database_url)
    run = db.create_training_run("classifier", {"model": "classifier"})
    assert run.state == QUEUED and run.log == ""
    assert db.start_training_run(run.id, "w1").state == RUNNING
    assert db.start_training_run(run.id, "w2") is None  # a second delivery does nothing
    db.record_training_progress(run.id, log="one\n", progress={"step": 1})
    seen = db.record_training_progress(run.id, log="two\n")
    assert seen.log == "one\ntwo\n" and seen.progress == {"step": 1}
    assert db.request_training_cancel(run.id).cancel_requested
    assert db.get_training_run(run.id).state == RUNNING  # the worker stops it
    assert db.finish_training_run(run.id, CANCELLED, log="bye\n").log.endswith("bye\n")
    assert db.finish_training_run(run.id, DONE) is None
    assert db.record_training_progress(run.id) is None  # not running: the worker must stop

    queued = db.create_training_run("filter", {"model": "filter"})
    assert db.request_training_cancel(queued.id).state == CANCELLED
    assert db.start_training_run(queued.id, "w1") is None

    stale = db.create_training_run("classifier", {})
    db.start_training_run(stale.id, "w3@host")
    time.sleep(1.2)
    assert [r.id for r in runs.fail_stale_runs(db, 1.0)] == [stale.id]
    failed = db.get_training_run(stale.id)
    assert failed.state == FAILED and "w3@host stopped sending heartbeats" in failed.reason
    assert [r.id for r in db.list_training_runs()] == [stale.id, queued.id, run.id]
    db.dispose()


@pytest.fixture
def service(redis_server, sqlite_url, tmp_path):
    """A database, Redis and a local model store, configured as a worker would be."""
    upgrade(sqlite_url)
    settings = get_settings().replace(redis_url=redis_server.url,
                                      broker_url=redis_server.url, result_backend=redis_server.url,
                                      database_url=sqlite_url)
    db = Database(sqlite_url)
    yield create_celery(settings), db, ModelStore(tmp_path / "store")
    db.dispose()


def _execute(celery, db, store, params):
    """Record a run and execute it here (no broker), as the training task would."""
    run = db.create_training_run(params["model"], runs.validate(params))
    state = trainer.execute(db, celery.conf.sieve.redis_url, run.id, "test@here",
                            heartbeat=0.2, store_url=str(store.root))
    return state, db.get_training_run(run.id)


def test_a_run_reports_progress_logs_and_publishes(service, fashion):
    celery, db, store = service
    events = celery.conf.sieve.redis_url
    subscription = redisconn.connect(events).pubsub(ignore_subscribe_messages=True)
    subscription.psubscribe("sieve:training-runs:*")
    state, run = _execute(celery, db, store, QUICK)
    assert state == DONE, run.reason
    assert run.version == "v1" and store.versions("classifier") == ["v1"]
    assert run.metrics["test_accuracy"] > 0.1
    # 500 images and a quarter of them again rendered as uploads (--upload-share), 128 a step
    assert run.progress["step"] == run.progress["steps"] == 5 and run.progress["stage"] == DONE
    assert [h["epoch"] for h in run.history] == [1] and run.curve
    assert "stage: training" in run.log and "epoch 1: train loss" in run.log
    assert "published classifier v1" in run.log
    kinds, deadline = [], time.monotonic() + 2
    while time.monotonic() < deadline:  # None also stands for the subscription's own reply
        if (message := subscription.get_message(timeout=0.1)) is not None:
            kinds.append(json.loads(message["data"])["type"])
    assert kinds[0] == "state" and "epoch" in kinds and kinds[-1] == "state"
    subscription.close()


def test_cancel_stops_within_a_step_and_publishes_nothing(service, fashion):
    celery, db, store = service
    params = {**QUICK, "subset": 2000, "epochs": 200, "batch_size": 32}
    run = db.create_training_run("classifier", runs.validate(params))
    outcome = []
    thread = threading.Thread(target=lambda: outcome.append(trainer.execute(
        db, celery.conf.sieve.redis_url, run.id, "test@here", heartbeat=0.2,
        store_url=str(store.root))))
    thread.start()
    wait_for(lambda: (db.get_training_run(run.id).progress or {}).get("step", 0) > 2, 60,
             "training steps")
    assert runs.cancel_run(celery, db, run.id).cancel_requested
    thread.join(timeout=30)
    assert outcome == [CANCELLED]
    done = db.get_training_run(run.id)
    assert done.state == CANCELLED and "nothing was published" in done.reason
    assert "during training (epoch" in done.reason
    assert store.versions("classifier") == []
    assert not list((store.root / "classifier").glob(".staging-*"))


def test_a_failing_run_is_failed_with_the_reason(service, tmp_path):
    celery, db, store = service
    state, run = _execute(celery, db, store, {**QUICK, "data_dir": str(tmp_path / "none")})
    assert state == FAILED and run.reason and "none" in run.reason
    assert "error:" in run.log


def test_a_queued_run_lost_in_a_redis_restart_is_sent_again(redis_server, celery_app, db):
    import redis

    queue = redis.Redis.from_url(redis_server.url)
    queue.delete("training")
    run = runs.submit_run(celery_app, db, QUICK)
    assert queue.llen("training") == 1
    assert runs.resend_lost_runs(celery_app, db, idle_for=0) == []  # its Redis still runs
    redis_server.restart()  # keeps nothing on disk: the message is gone
    assert queue.llen("training") == 0
    assert [r.id for r in runs.resend_lost_runs(celery_app, db, idle_for=0)] == [run.id]
    assert queue.llen("training") == 1
    assert db.get_training_run(run.id).redis_run_id == queue.info("server")["run_id"]
    assert runs.resend_lost_runs(celery_app, db, idle_for=0) == []  # sent once
    db.finish_training_run(run.id, CANCELLED, (QUEUED,))
    queue.delete("training")
