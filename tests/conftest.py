"""Shared fixtures: the Fashion-MNIST data and small models trained once per test session."""

import os

import pytest

from training import train
from training.data import DataError, load_dataset
from training.store import ModelStore


@pytest.fixture(scope="session")
def fashion():
    """The Fashion-MNIST data set from this machine (Debian's dataset-fashion-mnist)."""
    try:
        return load_dataset()
    except DataError as exc:
        # CI installs the data set: there a missing data set is a failure, not a skip.
        if os.environ.get("CI"):
            pytest.fail(f"Fashion-MNIST is missing in CI: {exc}")
        pytest.skip(f"Fashion-MNIST is not on this machine: {exc}")


@pytest.fixture(scope="session")
def fashion_test_images(fashion):
    """Test-split images as (N, 28, 28) uint8 arrays."""
    return fashion.test.images[:, 0].numpy()


def _train(store_dir, *options: str) -> None:
    """Run the training CLI into a store and fail the fixture on a non-zero exit."""
    code = train.cli(["--train", "--model-store", str(store_dir), *options])
    assert code == 0, f"training {options} exited with {code}"


@pytest.fixture(scope="session")
def trained_store(tmp_path_factory, fashion):
    """A model store with a classifier and a filter, each trained briefly on a subset."""
    root = tmp_path_factory.mktemp("models")
    # Adam converges faster than the defaults' SGD on runs this short.
    _train(root, "--model", "classifier", "--subset", "10000", "--epochs", "2",
           "--optimizer", "adam")
    _train(root, "--model", "filter", "--subset", "8000", "--epochs", "2", "--optimizer", "adam")
    return ModelStore(root)
