"""The training CLI, its artifacts, and the trained classifier and filter at work."""

import json

import numpy as np
import pytest
from PIL import Image, ImageDraw

from tests.images import png
from training import evaluate, outliers, train, uploads
from training.data import CLASSES_FASHION
from training.predict import Predictor

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

pytestmark = pytest.mark.slow


def test_help_states_every_default(capsys):
    """`--help` shows the default of each option."""
    with pytest.raises(SystemExit):
        train.get_args_parser().parse_args(["--help"])
    text = capsys.readouterr().out
    for option in ("--epochs", "--optimizer", "--batch-size", "--lr", "--seed", "--model"):
        assert option in text
    text = " ".join(text.split())  # undo argparse's line wrapping
    for default in ("(default: sgd)", "(default: classifier 128, filter 256)", "(default: 0)",
                    "(default: classifier 14, filter 6)",
                    "(default: all cores)", "(default: classifier)"):
        assert default in text


def test_nothing_to_do_is_an_error(caplog):
    """Without --train or --download-data the CLI says what to pass."""
    assert train.cli([]) == 2
    assert "nothing to do" in caplog.text


def test_classifier_artifact_and_card(trained_store):
    """Weights, a complete model card and the plots are published."""
    folder = trained_store.open("classifier")
    card = json.loads((folder / "card.json").read_text())
    assert card["classes"] == CLASSES_FASHION
    assert card["architecture"]["name"] == "sieve-cnn"
    assert card["preprocessing"]["size"] == 28
    assert len(card["data"]["checksum"]) == 64
    assert card["training"]["seed"] == 0 and card["training"]["epochs"] == 2
    assert card["training"]["seconds"] > 0
    assert "--subset 10000" in card["command"]
    assert card["code_version"]
    assert 0.0 <= card["metrics"]["test_accuracy"] <= 1.0
    assert len(card["metrics"]["confusion_matrix"]) == 10
    assert [row["epoch"] for row in card["history"]] == [1, 2]
    for picture in ("curves.png", "confusion.png"):
        assert (folder / picture).read_bytes().startswith(PNG_MAGIC)


def test_classifier_returns_a_known_class(trained_store, fashion_test_images):
    """Every answer names one of the data set's classes, with probabilities."""
    predictor = Predictor.from_store("classifier", store=trained_store)
    results = predictor.classify([png(a) for a in fashion_test_images[:20]], top_k=3)
    for result in results:
        assert result["class"] in CLASSES_FASHION
        assert len(result["top_k"]) == 3
        assert result["top_k"][0]["probability"] >= result["top_k"][1]["probability"]
        assert result["version"] == "v1"


def test_classifier_predicts_known_test_images(trained_store, fashion):
    """A briefly trained classifier gets most test images right, uploads included."""
    predictor = Predictor.from_store("classifier", store=trained_store)
    images, labels = fashion.test.images[:1000], fashion.test.labels[:1000]
    accuracy = (predictor.probabilities(images).argmax(1) == labels).float().mean()
    assert accuracy > 0.8
    # The first test image of each class, uploaded as PNG: at least 8 of 10 right.
    firsts = [int((fashion.test.labels == c).nonzero()[0]) for c in range(10)]
    uploads = [png(fashion.test.images[i, 0].numpy()) for i in firsts]
    named = [r["class"] for r in predictor.classify(uploads)]
    assert sum(n == CLASSES_FASHION[c] for c, n in enumerate(named)) >= 8


def test_filter_accepts_clothing_and_rejects_obvious_outliers(trained_store, fashion):
    """In-domain images pass; noise, blank pages and text are rejected."""
    predictor = Predictor.from_store("filter", store=trained_store)
    card = predictor.card
    assert 0.0 < card["threshold"] < 1.0
    assert card["metrics"]["in_domain_acceptance"] > 0.95
    verdicts = predictor.filter_verdicts([png(a) for a in fashion.test.images[:200, 0].numpy()])
    assert np.mean([v["accepted"] for v in verdicts]) > 0.95
    rng = np.random.default_rng(1)
    noise = rng.integers(0, 256, (28, 28), dtype=np.uint8)
    white = np.full((64, 64), 255, np.uint8)
    text = Image.new("L", (200, 60), 255)
    ImageDraw.Draw(text).text((10, 20), "Hello, filter!", fill=0)
    rejected = predictor.filter_verdicts([png(noise), png(white), text])
    assert not any(v["accepted"] for v in rejected), rejected


def test_filter_card_reports_held_out_kinds(trained_store):
    """Held-out outlier kinds are reported with rejection rate and AUROC."""
    metrics = trained_store.card("filter")["metrics"]
    for kind in outliers.HELD_OUT_KINDS:
        row = metrics["kinds"][kind]
        assert row["held_out"] is True
        assert 0.0 <= row["rejection_rate"] <= 1.0 and 0.0 <= row["auroc"] <= 1.0
    assert trained_store.open("filter").joinpath("scores.png").is_file()
    # The threshold was picked on upload-shaped validation images as well as plain ones.
    assert metrics["target_upload_acceptance"] == 0.985


def test_filter_threshold_keeps_every_kind_of_upload(trained_store, fashion):
    """The published threshold accepts at least `--upload-accept-rate` of each kind of
    upload-shaped validation image it was picked on (the fixture renders 100 per kind, from
    the validation split of seed 0, with seed 1), not only of the plain ones."""
    predictor = Predictor.from_store("filter", store=trained_store)
    threshold = predictor.card["threshold"]
    rate = predictor.card["metrics"]["target_upload_acceptance"]
    calibration = uploads.calibration_set(fashion.val.images, fashion.preprocessing, seed=1,
                                          per_kind=100)
    assert list(calibration) == list(uploads.RENDERED_KINDS)
    for kind, images in calibration.items():
        accepted = (predictor.probabilities(images) >= threshold - 1e-6).float().mean()
        assert accepted >= rate, (kind, float(accepted))


def test_evaluate_prints_metrics(trained_store, capsys):
    """`python -m training.evaluate` reports the stored models on the test split."""
    assert evaluate.cli(["--model-store", str(trained_store.root), "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["version"] == "v1" and metrics["images"] == 10000
    card = trained_store.card("classifier")
    assert metrics["accuracy"] == pytest.approx(card["metrics"]["test_accuracy"], abs=1e-6)
    assert evaluate.cli(["--model-store", str(trained_store.root), "--model", "filter"]) == 0
    assert "held-out outliers: AUROC" in capsys.readouterr().out


def test_evaluate_pipeline_reports_every_upload_kind(trained_store, capsys):
    """`--model pipeline`: both served models, per upload kind, then the outlier report;
    and the model cards carry per-kind figures of the upload-shaped test set."""
    store = str(trained_store.root)
    assert evaluate.cli(["--model-store", store, "--model", "pipeline", "--per-kind", "40",
                         "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert list(metrics["uploads"]) == list(uploads.KINDS)
    for row in metrics["uploads"].values():
        assert row["images"] == 40
        assert row["end_to_end_accuracy"] <= min(row["acceptance"], row["classifier_accuracy"])
    assert set(outliers.HELD_OUT_KINDS) <= set(metrics["outliers"]["kinds"])
    assert evaluate.cli(["--model-store", store, "--model", "pipeline", "--per-kind", "20"]) == 0
    table = capsys.readouterr().out
    assert all(f"  {kind} " in table for kind in uploads.KINDS)
    assert "held-out outliers: AUROC" in table
    filter_card, classifier_card = trained_store.card("filter"), trained_store.card("classifier")
    assert set(filter_card["metrics"]["uploads"]) == set(uploads.KINDS)
    assert set(classifier_card["metrics"]["uploads"]) == set(uploads.KINDS)


def test_load_weights_resumes_and_refuses_what_does_not_fit(trained_store, tmp_path, caplog):
    """A matching checkpoint fine-tunes; a missing or mismatched one is a clear error."""
    weights = trained_store.open("classifier") / "model.pt"
    common = ["--train", "--model-store", str(tmp_path), "--subset", "512", "--epochs", "1"]
    assert train.cli([*common, "--load-weights", str(weights), "--lr", "0.01"]) == 0
    card = json.loads((tmp_path / "classifier" / "v1" / "card.json").read_text())
    assert card["training"]["load_weights"] == str(weights)
    # Starting from trained weights, one tiny epoch keeps the accuracy far above chance.
    assert card["metrics"]["test_accuracy"] > 0.7
    assert train.cli([*common, "--load-weights", str(tmp_path / "nope.pt")]) == 2
    assert "no such checkpoint file" in caplog.text
    assert train.cli([*common, "--load-weights", str(weights), "--width", "8"]) == 2
    assert "pass the matching --width" in caplog.text
    filter_weights = trained_store.open("filter") / "model.pt"
    assert train.cli([*common, "--load-weights", str(filter_weights)]) == 2
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    assert train.cli([*common, "--load-weights", str(junk)]) == 2
    assert "not a readable PyTorch checkpoint" in caplog.text


def test_image_folder_training(tmp_path):
    """An image-folder data set of RGB photos trains end to end and learns."""
    rng = np.random.default_rng(0)
    colours = {"reds": (200, 30, 30), "blues": (30, 30, 200)}
    for split, count in (("train", 40), ("val", 10)):
        for name, colour in colours.items():
            folder = tmp_path / "data" / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                size = tuple(int(s) for s in rng.integers(40, 120, 2))
                noise = rng.integers(-40, 40, (size[1], size[0], 3))
                pixels = np.clip(np.array(colour) + noise, 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.jpg")
    store = tmp_path / "store"
    assert train.cli(["--train", "--data-dir", str(tmp_path / "data"), "--image-size", "32",
                      "--epochs", "3", "--lr", "0.05", "--batch-size", "16",
                      "--model-store", str(store)]) == 0
    card = json.loads((store / "classifier" / "v1" / "card.json").read_text())
    assert card["classes"] == ["blues", "reds"]
    assert card["preprocessing"]["mode"] == "RGB"
    assert card["metrics"]["test_accuracy"] == 1.0
    predictor = Predictor.from_checkpoint(store / "classifier" / "v1" / "model.pt")
    red = Image.new("RGB", (50, 70), (210, 20, 25))
    assert predictor.classify([red])[0]["class"] == "reds"


def test_short_runs_with_the_defaults_are_stable(tmp_path):
    """Gradient clipping keeps a tiny SGD run from diverging (it did without it)."""
    assert train.cli(["--train", "--subset", "2000", "--epochs", "2",
                      "--model-store", str(tmp_path)]) == 0
    card = json.loads((tmp_path / "classifier" / "v1" / "card.json").read_text())
    assert card["training"]["clip_grad"] == 5.0
    assert card["metrics"]["test_accuracy"] > 0.5
