"""The pipeline steps as plain functions: real database, real Redis pub/sub, real models,
no broker. What the tasks do, including what a redelivered message must not do."""

import json

import pytest

from bench.processes import wait_for
from sieve.models import CANCELLED, CLASSIFYING, DONE, FAILED, FILTERING, QUEUED, REJECTED
from sieve.pubsub import Events
from tests.images import truncated_png
from workers import pipeline
from workers.serving import ServedModels


@pytest.fixture
def services(db, settings, trained_store):
    """Services as a worker process builds them, on the test store."""
    return pipeline.Services(db=db, events=Events(settings.redis_url),
                             models=ServedModels(str(trained_store.root)),
                             time_limit=30, top_k=3)


def _new(services, data: bytes, pipeline_name: str = "filter") -> str:
    return services.db.create_prediction(data, "image/png", pipeline_name).id


def _states(services, pid: str) -> list[str]:
    return [e["state"] for e in services.db.events(pid)]


def test_accepted_image_is_filtered_then_classified(services, known_images):
    data, label = known_images[0]
    pid = _new(services, data)
    assert pipeline.filter_image(services, pid) is True
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
    assert pipeline.filter_image(services, pid) is False
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
    assert pipeline.filter_image(services, pid) and pipeline.filter_image(services, pid)
    pipeline.classify(services, pid)
    pipeline.classify(services, pid)
    assert pipeline.filter_image(services, pid) is False
    assert _states(services, pid) == [QUEUED, FILTERING, CLASSIFYING, DONE]


def test_a_broken_image_fails_with_a_reason(services, fashion_test_images):
    pid = _new(services, truncated_png(fashion_test_images[0]))
    assert pipeline.filter_image(services, pid) is False
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
    assert pipeline.filter_image(services, pid) is False
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
                                models=ServedModels(str(trained_store.root)))
    pid = _new(offline, known_images[0][0], "classifier")
    pipeline.classify(offline, pid)
    assert db.get_prediction(pid).state == DONE  # the database holds the record


def _new_many(services, images: list[bytes], pipeline_name: str = "filter") -> list[str]:
    uploads = [(data, "image/png", f"{i}.png") for i, data in enumerate(images)]
    return [p.id for p in services.db.create_predictions(uploads, pipeline_name)]


def _assert_filtered_and_classified(services, labels: dict[str, str]) -> None:
    """Each prediction ({id: expected label}) went through both models, once."""
    for pid, label in labels.items():
        done = services.db.get_prediction(pid)
        assert done.state == DONE and done.label == label
        assert set(done.model_versions) == {"filter", "classifier"}
        assert _states(services, pid) == [QUEUED, FILTERING, CLASSIFYING, DONE]


def test_images_submitted_together_share_one_forward_pass(services, known_images,
                                                          outlier_png, fashion_test_images):
    (first, label_1), (second, label_2) = known_images[0], known_images[1]
    ids = _new_many(services, [first, outlier_png, truncated_png(fashion_test_images[0]),
                               second, first])
    shirt, outlier, broken, trousers, cancelled = ids
    services.db.transition(cancelled, CANCELLED, (QUEUED,))
    assert pipeline.filter_many(services, ids) == [shirt, trousers]
    assert services.models.batch_stats()["filter"] == {"batches": 1, "images": 3}
    assert services.db.get_prediction(outlier).state == REJECTED
    assert "not like the images" in services.db.get_prediction(outlier).reason
    assert "not a usable image" in services.db.get_prediction(broken).reason
    pipeline.classify_many(services, [shirt, trousers])
    assert services.models.batch_stats()["classifier"] == {"batches": 1, "images": 2}
    _assert_filtered_and_classified(services, {shirt: label_1, trousers: label_2})
    # Redelivered messages: nothing moves again, no second result.
    assert pipeline.filter_many(services, ids) == []
    pipeline.classify_many(services, ids)
    assert [_states(services, pid) for pid in ids] == [
        [QUEUED, FILTERING, CLASSIFYING, DONE], [QUEUED, FILTERING, REJECTED],
        [QUEUED, FILTERING, FAILED], [QUEUED, FILTERING, CLASSIFYING, DONE],
        [QUEUED, CANCELLED]]


def test_a_redelivered_filter_step_passes_filtered_images_on(services, known_images):
    ids = _new_many(services, [known_images[0][0], known_images[1][0]])
    assert pipeline.filter_many(services, ids) == ids
    assert pipeline.filter_many(services, ids) == ids  # the classifier step may be lost
    pipeline.classify_many(services, ids)
    assert {services.db.get_prediction(pid).state for pid in ids} == {DONE}


def test_the_filter_step_may_go_on_through_the_classifier_in_the_same_call(
        services, known_images, outlier_png):
    (shirt_png, shirt_label), (second_png, second_label) = known_images[:2]
    ids = _new_many(services, [shirt_png, outlier_png, second_png])
    shirt, outlier, filtered = ids
    # One filtered already (a redelivery after the filter step): it goes on as well.
    assert pipeline.filter_many(services, [filtered]) == [filtered]
    assert pipeline.filter_many(services, ids, then_classify=True) == [filtered, shirt]
    assert services.models.batch_stats()["classifier"] == {"batches": 1, "images": 2}
    _assert_filtered_and_classified(services, {shirt: shirt_label, filtered: second_label})
    assert _states(services, outlier) == [QUEUED, FILTERING, REJECTED]
    assert pipeline.filter_many(services, ids, then_classify=True) == []  # redelivered


def test_a_prediction_cancelled_before_its_classifier_step_stays_cancelled(
        services, known_images, monkeypatch):
    pid = _new(services, known_images[0][0])
    classify = services.models.classify_many

    def cancelled_meanwhile(*args):
        services.db.transition(pid, CANCELLED, (CLASSIFYING,))
        return classify(*args)

    monkeypatch.setattr(services.models, "classify_many", cancelled_meanwhile)
    assert pipeline.filter_many(services, [pid], then_classify=True) == [pid]
    assert _states(services, pid) == [QUEUED, FILTERING, CLASSIFYING, CANCELLED]


def test_images_together_on_the_classifier_only_path(services, outlier_png, known_images):
    ids = _new_many(services, [outlier_png, known_images[0][0]], "classifier")
    pipeline.classify_many(services, ids)
    done = [services.db.get_prediction(pid) for pid in ids]
    assert [p.state for p in done] == [DONE, DONE] and done[1].label == known_images[0][1]
    assert all(p.filter_score is None for p in done)


def test_images_together_without_a_model_fail_with_what_to_run(db, settings, tmp_path,
                                                               known_images):
    empty = pipeline.Services(db=db, events=Events(settings.redis_url),
                              models=ServedModels(str(tmp_path / "no-models")))
    ids = _new_many(empty, [known_images[0][0], known_images[1][0]])
    assert pipeline.filter_many(empty, ids) == []
    for pid in ids:
        failed = db.get_prediction(pid)
        assert failed.state == FAILED and "no filter has been trained yet" in failed.reason


def test_a_task_that_cannot_reach_redis_leaves_its_prediction_to_recovery(
        services, known_images, monkeypatch):
    import kombu.exceptions
    import redis

    from workers import tasks

    monkeypatch.setitem(tasks._state, "services", services)
    unreachable, broken = _new_many(services, [known_images[0][0], known_images[1][0]])
    for exc in (redis.ConnectionError("Error 111 connecting"),
                kombu.exceptions.OperationalError("Error 111 connecting")):
        tasks.filter_images.on_failure(exc, "task", ([unreachable],), {}, None)
    assert services.db.get_prediction(unreachable).state == QUEUED
    tasks.filter_images.on_failure(ValueError("a bug"), "task", ([broken],), {}, None)
    failed = services.db.get_prediction(broken)
    assert failed.state == FAILED and "internal error in sieve.filter: a bug" in failed.reason
