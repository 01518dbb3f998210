"""The pipeline steps as plain functions: real database, real Redis pub/sub, real models,
no broker. What the tasks do, including what a redelivered message must not do."""

import json

import pytest

from sieve.events import Events
from sieve.models import CANCELLED, CLASSIFYING, DONE, FAILED, FILTERING, QUEUED, REJECTED
from sieve.processes import wait_for
from tests.images import truncated_png
from workers import pipeline
from workers.serving import ServedModels


@pytest.fixture
def services(db, settings, trained_store):
    """Services as a worker process builds them, on the test store."""
    return pipeline.Services(db=db, events=Events(settings.redis_url),
                             models=ServedModels(str(trained_store.root), max_wait=0),
                             time_limit=30, top_k=3)


def _new(services, data: bytes, pipeline_name: str = "filter") -> str:
    return services.db.create_prediction(data, "image/png", pipeline_name).id


def _states(services, pid: str) -> list[str]:
    return [e["state"] for e in services.db.events(pid)]


def test_accepted_image_is_screened_then_classified(services, known_images):
    data, label = known_images[0]
    pid = _new(services, data)
    assert pipeline.screen(services, pid) is True
    after_filter = services.db.get_prediction(pid)
    assert after_filter.state == CLASSIFYING
    assert after_filter.filter_score >= after_filter.filter_threshold
    pipeline.classify(services, pid)
    done = services.db.get_prediction(pid)
    assert done.state == DONE and done.label == label
    assert len(done.top_k) == 3 and done.top_k[0]["class"] == label
    assert set(done.model_versions) == {"filter", "classifier"}
    assert _states(services, pid) == [QUEUED, FILTERING, CLASSIFYING, DONE]


def test_outlier_is_rejected_with_its_score(services, outlier_png):
    pid = _new(services, outlier_png)
    assert pipeline.screen(services, pid) is False
    rejected = services.db.get_prediction(pid)
    assert rejected.state == REJECTED and rejected.label is None
    assert rejected.filter_score < rejected.filter_threshold
    assert "not like the images" in rejected.reason
    pipeline.classify(services, pid)  # a stray classifier message changes nothing
    assert _states(services, pid) == [QUEUED, FILTERING, REJECTED]


def test_classifier_only_path_skips_the_filter(services, outlier_png):
    pid = _new(services, outlier_png, "classifier")
    pipeline.classify(services, pid)
    done = services.db.get_prediction(pid)
    assert done.state == DONE and done.filter_score is None
    assert list(done.model_versions) == ["classifier"]


def test_redelivered_steps_do_not_make_a_second_result(services, known_images):
    data, _ = known_images[1]
    pid = _new(services, data)
    assert pipeline.screen(services, pid) and pipeline.screen(services, pid)
    pipeline.classify(services, pid)
    pipeline.classify(services, pid)
    assert pipeline.screen(services, pid) is False
    assert _states(services, pid) == [QUEUED, FILTERING, CLASSIFYING, DONE]


def test_a_broken_image_fails_with_a_reason(services, fashion_test_images):
    pid = _new(services, truncated_png(fashion_test_images[0]))
    assert pipeline.screen(services, pid) is False
    failed = services.db.get_prediction(pid)
    assert failed.state == FAILED and "not a usable image" in failed.reason


def test_a_missing_model_fails_with_what_to_run(db, settings, tmp_path, known_images):
    empty = pipeline.Services(db=db, events=Events(settings.redis_url),
                              models=ServedModels(str(tmp_path / "no-models")))
    pid = _new(empty, known_images[0][0], "classifier")
    pipeline.classify(empty, pid)
    failed = db.get_prediction(pid)
    assert failed.state == FAILED
    assert "no classifier has been trained yet" in failed.reason
    assert "python -m training.train --train --model classifier" in failed.reason


def test_a_cancelled_prediction_is_left_alone(services, known_images):
    pid = _new(services, known_images[0][0])
    services.db.transition(pid, CANCELLED, (QUEUED,))
    assert pipeline.screen(services, pid) is False
    pipeline.classify(services, pid)
    assert _states(services, pid) == [QUEUED, CANCELLED]


def test_state_changes_are_published(services, known_images):
    pid = _new(services, known_images[0][0], "classifier")
    subscription = services.events.subscribe(pid)
    wait_for(lambda: subscription.get_message(timeout=0.1) is None and subscription.subscribed,
             5, "the subscription")
    pipeline.classify(services, pid)
    received = []

    def collect():
        message = subscription.get_message(timeout=0.1)
        if message:
            received.append(json.loads(message["data"]))
        return len(received) >= 2

    wait_for(collect, 10, "two published state changes")
    assert [e["state"] for e in received] == [CLASSIFYING, DONE]
    assert received == services.db.events(pid)[1:]
    subscription.close()


def test_publishing_without_redis_is_not_an_error(db, trained_store, known_images):
    offline = pipeline.Services(db=db, events=Events("redis://127.0.0.1:1/0"),
                                models=ServedModels(str(trained_store.root), max_wait=0))
    pid = _new(offline, known_images[0][0], "classifier")
    pipeline.classify(offline, pid)
    assert db.get_prediction(pid).state == DONE  # the database holds the record
