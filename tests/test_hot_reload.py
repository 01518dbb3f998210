"""Serving workers pick up a newly promoted version without a restart (in-process)."""

import threading

import pytest

from sieve.processes import wait_for
from tests.stores import copy_version
from training import registry
from training.store import ModelStore, StoreError
from workers.serving import ServedModels


def test_a_promotion_is_served_without_failing_predictions(trained_store, known_images,
                                                           tmp_path):
    store = ModelStore(tmp_path / "store")
    for _ in range(3):
        copy_version(trained_store, store, "classifier")
    registry.promote("classifier", "v1", store=store)
    models = ServedModels(str(store.root), reload_interval=0.2)
    data = known_images[0][0]
    assert models.classify_many([data], 10, 3, ["k"])[0]["version"] == "v1"

    registry.promote("classifier", "v2", store=store)
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
        wait_for(lambda: answers.count("v2") > 20, 30, "predictions by v2")
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=10)
    assert not errors
    assert set(answers) == {"v1", "v2"} and answers[-1] == "v2"

    # A damaged version is refused: the worker goes on serving the one it has.
    (store.root / "classifier" / "v3" / "model.pt").write_bytes(b"damaged")
    registry.promote("classifier", "v3", store=store)
    with pytest.raises(StoreError, match="damaged"):
        models.reload("classifier")
    assert models.classify_many([data], 10, 3, ["k"])[0]["version"] == "v2"
