"""The pipeline as deployed: real worker processes, a real Redis, a real database.

Predictions are submitted the way the web tier submits them (workers.client.submit) and
followed through the database; every wait has a timeout.
"""

import json
import os
import subprocess
import sys

import pytest
import redis
import requests

from bench.processes import free_port, wait_for
from sieve.config import ROOT, read_settings
from sieve.models import DONE, FAILED, FILTERING, QUEUED, REJECTED
from sieve.pubsub import Events
from tests.images import large_png, truncated_png
from workers.celery_app import create_celery
from workers.client import QueueUnavailable, send, submit, submit_many

pytestmark = pytest.mark.slow


def _final(db, pid: str, timeout: float = 60):
    """Wait for the prediction to reach a final state; return it."""
    return wait_for(lambda: (p := db.get_prediction(pid)) is not None and p.final and p,
                    timeout, f"prediction {pid} to finish")


def _send(celery_app, db, data: bytes, pipeline: str = "filter") -> str:
    return submit(celery_app, db, data, "image/png", pipeline, filename="upload.png").id


def test_images_through_the_whole_chain(start_worker, celery_app, db, settings, known_images,
                                        outlier_png):
    metrics_port = free_port()
    start_worker(SIEVE_WORKER_METRICS_PORT=str(metrics_port))
    data, label = known_images[0]
    events = Events(settings.redis_url)
    accepted = _send(celery_app, db, data)
    subscription = events.subscribe(accepted)
    rejected = _send(celery_app, db, outlier_png)
    only = _send(celery_app, db, outlier_png, "classifier")

    done = _final(db, accepted)
    assert done.state == DONE and done.label == label
    assert set(done.model_versions) == {"filter", "classifier"}
    assert [e["state"] for e in db.events(accepted)] == [QUEUED, FILTERING, "classifying", DONE]

    no = _final(db, rejected)
    assert no.state == REJECTED and no.filter_score < no.filter_threshold
    assert "classifier" not in no.model_versions  # the chain stopped at the filter

    classified = _final(db, only)
    assert classified.state == DONE and classified.filter_score is None

    pushed = []
    wait_for(lambda: (m := subscription.get_message(timeout=0.1)) is not None
             and pushed.append(json.loads(m["data"])) is None and pushed[-1]["state"] == DONE,
             10, "the done event on pub/sub")
    assert pushed[-1] == db.events(accepted)[-1]
    subscription.close()

    # A worker counts a prediction after committing it, and a task after it returns: the
    # last counts may come a moment after the database shows every prediction final.
    expected = ['sieve_worker_predictions_total{state="done"} 2.0',
                'sieve_worker_predictions_total{state="rejected"} 1.0',
                'sieve_worker_batch_size_count{model="filter"}',
                'sieve_worker_task_seconds_count{outcome="success",task="sieve.classify"}',
                'sieve_worker_served_model{model="classifier",version="v1"} 1.0',
                'sieve_worker_queue_depth{queue="classify"} 0.0']
    wait_for(lambda: all(line in requests.get(f"http://127.0.0.1:{metrics_port}/metrics",
                                              timeout=5).text for line in expected),
             10, f"the worker's metrics to show {expected}")


def test_a_broken_image_fails_and_the_worker_goes_on(start_worker, celery_app, db,
                                                     fashion_test_images, known_images):
    worker = start_worker()
    broken = _send(celery_app, db, truncated_png(fashion_test_images[0]))
    failed = _final(db, broken)
    assert failed.state == FAILED and "not a usable image" in failed.reason
    after = _final(db, _send(celery_app, db, known_images[0][0]))
    assert after.state == DONE
    assert worker.process.poll() is None


def test_batches_form_when_images_wait(start_worker, celery_app, db, known_images):
    """Images sent while the worker is busy share steps and forward passes (the log counts
    them)."""
    worker = start_worker()
    ids = [_send(celery_app, db, data, "classifier") for data, _ in known_images[:20]]
    results = [_final(db, pid) for pid in ids]
    assert all(p.state == DONE for p in results)
    assert [p.label for p in results] == [label for _, label in known_images[:20]]

    def sizes(what: str) -> list[int]:
        return [int(line.rsplit(f"{what} of ", 1)[1].split()[0])
                for line in worker.log().splitlines() if f"classifier {what} of " in line]

    # A step logs its size after it has written its predictions: wait for the last line.
    wait_for(lambda: sum(sizes("step")) >= 20, 10, "the worker to log its last step")
    batches = sizes("batch")
    assert sum(batches) == 20 and max(batches) > 1, batches
    # The whole step, not only the forward pass: one query and one transaction per change.
    steps = sizes("step")
    assert sum(steps) == 20 and max(steps) > 1, steps


def test_a_submission_of_many_images_runs_as_one_batch_per_model(
        start_worker, celery_app, db, known_images, outlier_png):
    worker = start_worker()
    images = [data for data, _ in known_images[:7]] + [outlier_png]
    sent = submit_many(celery_app, db, [(d, "image/png", f"{i}.png")
                                        for i, d in enumerate(images)], "filter")
    results = [_final(db, p.id) for p in sent]
    assert [p.state for p in results] == [DONE] * 7 + [REJECTED]
    assert [p.label for p in results[:7]] == [label for _, label in known_images[:7]]
    assert all(set(p.model_versions) == {"filter", "classifier"} for p in results[:7])
    log = worker.log()
    assert "filter batch of 8 " in log and "classifier batch of 7 " in log
    # The worker consumes the classify queue too: it classifies what it accepted itself.
    assert _received(worker, "sieve.filter") == 1 and _received(worker, "sieve.classify") == 0


def _received(worker, task: str) -> int:
    """How many messages of `task` the worker has taken from its queues."""
    return sum(1 for line in worker.log().splitlines()
               if f"Task {task}[" in line and line.endswith("] received"))


def test_workers_split_by_queue_hand_accepted_images_on_through_the_classify_queue(
        start_worker, celery_app, db, known_images):
    filterer = start_worker("filterer", queues="filter")
    classifier = start_worker("classifier", queues="classify")
    one = _send(celery_app, db, known_images[0][0])
    many = submit_many(celery_app, db, [(data, "image/png", f"{i}.png")
                                        for i, (data, _) in enumerate(known_images[1:4])],
                       "filter")
    results = [_final(db, pid) for pid in [one, *(p.id for p in many)]]
    assert [p.label for p in results] == [label for _, label in known_images[:4]]
    assert _received(filterer, "sieve.filter") == 2  # one message per submission
    assert _received(classifier, "sieve.classify") == 2
    assert _received(filterer, "sieve.classify") == _received(classifier, "sieve.filter") == 0


@pytest.mark.parametrize(("chain_locally", "classify_messages"), [("1", 0), ("0", 1)])
def test_a_worker_of_both_queues_classifies_in_place_unless_told_not_to(
        start_worker, celery_app, db, known_images, chain_locally, classify_messages):
    worker = start_worker(SIEVE_CHAIN_LOCALLY=chain_locally)
    data, label = known_images[0]
    done = _final(db, _send(celery_app, db, data))
    assert done.label == label
    assert [e["state"] for e in db.events(done.id)] == [QUEUED, FILTERING, "classifying", DONE]
    assert _received(worker, "sieve.filter") == 1
    assert _received(worker, "sieve.classify") == classify_messages


def test_a_submission_with_an_unknown_pipeline_is_refused_before_anything_is_stored(
        celery_app, db, known_images):
    with pytest.raises(ValueError, match="unknown pipeline"):
        submit(celery_app, db, known_images[0][0], "image/png", "neither")
    assert db.count_predictions() == 0


def test_killed_worker_task_is_redelivered_and_completes_once(start_worker, celery_app, db,
                                                              fashion_test_images):
    # Large uploads: decoding 25 megapixels keeps each task in `filtering` for a while.
    big = [large_png(a, 5000) for a in fashion_test_images[:3]]
    doomed = start_worker("doomed")
    ids = [_send(celery_app, db, data) for data in big]
    wait_for(lambda: any(db.get_prediction(pid).state == FILTERING for pid in ids), 60,
             "a task to start", interval=0.005)
    doomed.kill()
    assert not all(db.get_prediction(pid).final for pid in ids)
    survivor = start_worker("survivor")
    try:
        finished = [_final(db, pid, timeout=180) for pid in ids]
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n--- doomed:\n{doomed.log()[-3000:]}"
                             f"\n--- survivor:\n{survivor.log()[-5000:]}") from None
    for prediction in finished:
        assert prediction.state in (DONE, REJECTED)
        states = [e["state"] for e in db.events(prediction.id)]
        assert sum(s in (DONE, REJECTED) for s in states) == 1, states


def test_redis_restart_loses_no_queued_prediction(redis_server, start_worker, celery_app, db,
                                                  known_images):
    """Redis keeps nothing on disk: a restart forgets the queues. The database does not,
    and the workers enqueue again what the old Redis run held."""
    ids = [_send(celery_app, db, data) for data, _ in known_images[:5]]  # no worker yet
    redis_server.restart()
    start_worker()
    results = [_final(db, pid, timeout=90) for pid in ids]
    assert [p.label for p in results] == [label for _, label in known_images[:5]]
    for pid in ids:
        assert [e["state"] for e in db.events(pid)].count(DONE) == 1


def test_workers_ride_out_a_redis_restart(redis_server, start_worker, celery_app, db,
                                          known_images):
    worker = start_worker()
    assert _final(db, _send(celery_app, db, known_images[0][0])).state == DONE
    redis_server.restart()
    after = _send(celery_app, db, known_images[1][0])
    assert _final(db, after, timeout=90).state == DONE
    assert worker.process.poll() is None


def test_sending_a_chain_subscribes_to_no_result_channel(redis_server, celery_app):
    """Nothing reads the tasks' results: sending must not make Celery's result backend
    subscribe to them (a SUBSCRIBE and UNSUBSCRIBE per message, and a connection)."""
    client = redis.Redis.from_url(redis_server.url)
    client.config_resetstat()
    send(celery_app, ["one"], "filter")
    send(celery_app, ["a", "b"], "filter")
    send(celery_app, ["only"], "classifier")
    calls = client.info("commandstats")
    assert "cmdstat_subscribe" not in calls and "cmdstat_psubscribe" not in calls, calls
    messages = [json.loads(raw) for queue in ("filter", "classify")
                for raw in client.lrange(queue, 0, -1)]
    assert len(messages) == 3 and all(m["headers"]["ignore_result"] for m in messages)
    client.flushall()


def test_submit_without_redis_says_so_and_leaves_nothing_to_run(settings, db, known_images):
    offline = create_celery(settings.replace(broker_url="redis://127.0.0.1:1/0"))
    offline.conf.broker_connection_timeout = 1
    with pytest.raises(QueueUnavailable, match="unreachable"):
        submit(offline, db, known_images[0][0], "image/png", "filter")
    recorded = db.unfinished_outside("any", idle_for=0)
    assert recorded == []  # nothing is left waiting to run behind the client's back


def test_flower_runs_against_the_app(settings, tmp_path):
    port = free_port()
    env = {"REDIS_URL": settings.redis_url, "CELERY_BROKER_URL": settings.broker_url,
           "CELERY_RESULT_BACKEND": settings.result_backend}
    log = open(tmp_path / "flower.log", "wb")  # noqa: SIM115 - closed below
    flower = subprocess.Popen([sys.executable, "-m", "celery", "-A", "workers", "flower",
                               f"--port={port}", "--address=127.0.0.1"],
                              cwd=ROOT, env={**os.environ, **env},
                              stdout=log, stderr=log)
    try:
        def healthy():
            try:
                return requests.get(f"http://127.0.0.1:{port}/healthcheck", timeout=2).ok
            except requests.ConnectionError:
                return False
        wait_for(healthy, 60, "Flower's health check", interval=0.5)
    finally:
        flower.terminate()
        flower.wait(timeout=30)
        log.close()


def test_a_message_lost_on_the_current_redis_run_is_sent_again(redis_server, start_worker,
                                                                celery_app, db, known_images):
    """A worker killed between taking a message off the queue and recording it as
    unacknowledged loses it: Redis did not restart, and the prediction stays queued until
    recovery finds it untouched for twice the visibility timeout."""
    import redis

    pid = _send(celery_app, db, known_images[0][0])  # no worker yet
    redis.Redis.from_url(redis_server.url).delete("filter")  # the message is gone
    start_worker(SIEVE_VISIBILITY_TIMEOUT="2")
    finished = _final(db, pid, timeout=60)
    assert finished.state == DONE
    assert [e["state"] for e in db.events(pid)].count(DONE) == 1


def test_chain_locally_reads_yes_and_no_and_refuses_anything_else(monkeypatch):
    for raw, expected in (("", True), ("0", False), ("off", False), ("YES", True)):
        monkeypatch.setenv("SIEVE_CHAIN_LOCALLY", raw)
        assert read_settings().chain_locally is expected
    monkeypatch.setenv("SIEVE_CHAIN_LOCALLY", "sometimes")
    with pytest.raises(ValueError, match="SIEVE_CHAIN_LOCALLY='sometimes' is not a yes/no"):
        read_settings()
