"""The filter's outlier data set: every kind, the split, determinism, balance and sources."""

import numpy as np
import pytest
import torch
from PIL import Image

from training import outliers
from training.preprocess import FASHION_MNIST, to_canonical

# Kinds whose every image is a drawing on a dark background: each must have visible ink.
INKED = {
    "font_digits",
    "font_letters",
    "font_scripts",
    "font_symbols",
    "scribbles",
    "shapes",
    "icons",
    "sklearn_digits",
}


@pytest.fixture(scope="module")
def samples() -> dict[str, np.ndarray]:
    """Twelve images of every kind, generated once for the module."""
    return {
        kind: generate(np.random.default_rng(7), 12) for kind, generate in outliers.KINDS.items()
    }


@pytest.mark.parametrize("kind", list(outliers.KINDS))
def test_kind_shape_and_dtype(samples, kind):
    assert samples[kind].shape == (12, 28, 28)
    assert samples[kind].dtype == np.uint8


@pytest.mark.parametrize("kind", sorted(INKED))
def test_drawings_have_ink(samples, kind):
    images = samples[kind]
    assert (images.max(axis=(1, 2)) > 60).all()
    assert ((images > 40).sum(axis=(1, 2)) >= 5).all()


@pytest.mark.parametrize("kind", sorted(set(outliers.KINDS) - INKED - {"constant"}))
def test_other_kinds_vary(samples, kind):
    images = samples[kind].astype(float)
    assert images.std(axis=0).mean() > 5, "all images alike"
    assert (images.std(axis=(1, 2)) > 1).mean() > 0.5, "mostly flat images"


def test_constant_images_are_flat(samples):
    assert (samples["constant"].astype(float).std(axis=(1, 2)) < 8).all()


@pytest.mark.parametrize("kind", list(outliers.KINDS))
def test_kinds_are_canonical(samples, kind):
    """Each image is already in the form the preprocessing produces: it passes unchanged."""
    for image in samples[kind]:
        again = to_canonical(Image.fromarray(image), FASHION_MNIST)[0]
        assert np.array_equal(again, image)


def test_empty_request():
    for generate in outliers.KINDS.values():
        assert generate(np.random.default_rng(0), 0).shape == (0, 28, 28)


def test_split_is_disjoint_and_complete():
    train, held_out = set(outliers.TRAIN_KINDS), set(outliers.HELD_OUT_KINDS)
    assert not train & held_out
    assert train | held_out == set(outliers.KINDS)
    assert len(outliers.TRAIN_KINDS) >= 10 and len(outliers.HELD_OUT_KINDS) >= 3


def test_make_outliers_form():
    images = outliers.make_outliers(["noise", "font_digits"], 10, seed=0)
    assert isinstance(images, torch.Tensor)
    assert images.shape == (10, 1, 28, 28)
    assert images.dtype == torch.uint8


def test_make_outliers_is_deterministic():
    kinds = ["font_letters", "photos", "scribbles"]
    first = outliers.make_outliers(kinds, 30, seed=3)
    assert torch.equal(first, outliers.make_outliers(kinds, 30, seed=3))
    assert not torch.equal(first, outliers.make_outliers(kinds, 30, seed=4))


def test_a_kind_does_not_depend_on_its_neighbours():
    alone = outliers.make_outliers(["gradients"], 8, seed=5)
    mixed = outliers.make_outliers(["gradients", "noise"], 16, seed=5)
    assert set(map(bytes, alone.numpy())) <= set(map(bytes, mixed.numpy()))


def test_make_outliers_balances_kinds(monkeypatch):
    for value, kind in enumerate(["a", "b", "c"], start=1):
        monkeypatch.setitem(
            outliers.KINDS, kind, lambda rng, n, v=value: np.full((n, 28, 28), v, np.uint8)
        )
    images = outliers.make_outliers(["a", "b", "c"], 301, seed=0)
    counts = np.bincount(images[:, 0, 0, 0].numpy(), minlength=4)[1:]
    assert counts.sum() == 301 and counts.max() - counts.min() <= 1
    assert len(set(images[:20, 0, 0, 0].tolist())) > 1, "kinds are shuffled together"


@pytest.mark.parametrize("kinds", [["nope"], [], ["noise", "nope"]])
def test_make_outliers_rejects_unknown_kinds(kinds):
    with pytest.raises(ValueError, match="supported"):
        outliers.make_outliers(kinds, 4, seed=0)


def test_sources_name_a_licence_for_every_kind():
    found = outliers.sources()
    for source in found:
        assert source["name"] and source["origin"] and source["licence"].strip()
        assert set(source["kinds"]) <= set(outliers.KINDS)
    covered = {kind for source in found for kind in source["kinds"]}
    assert covered == set(outliers.KINDS)


def test_preview_writes_a_png(tmp_path):
    path = tmp_path / "preview.png"
    outliers.preview(path, per_kind=2)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
