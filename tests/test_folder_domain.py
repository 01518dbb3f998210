"""A photo domain brought by a user, end to end: an image folder of colour product photos
trains a torchvision ResNet-18 (from a state dict the test writes, backbone frozen) and a
photo filter (against a folder of the user's "not my domain" pictures), both are
published to a store, and the real worker and web tier serve them: an uploaded photo
comes back with its class by name, and the SageMaker archive of both answers alike."""

import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

from bench.processes import Worker
from sieve.migrate import upgrade
from sieve.store import ModelStore
from tests.photos import write_state_dict
from tests.sagemaker_handler import run_handler
from training import train
from training.data import load_dataset
from training.models import architecture, build_model
from training.photo_folder import DOMAIN, make_outliers_dir, make_photo_folder
from training.predict import Predictor
from training.sagemaker.package import build_model_archive, safe_extract
from web import create_app
from web.api.tokens import create_token
from web.users import create_user

pytestmark = pytest.mark.slow

SIZE = "32"  # input side: small, so that the whole module runs in about a minute


@pytest.fixture(scope="module")
def photo_domain(tmp_path_factory, fashion):
    """The folder data set, the user's outliers, a state dict and a store with both models."""
    root = tmp_path_factory.mktemp("domain")
    folder = make_photo_folder(root / "products", fashion)
    others = make_outliers_dir(root / "not-products", fashion)
    weights = write_state_dict(root / "resnet18.pt")
    store = root / "store"
    assert train.cli(["--train", "--data-dir", str(folder), "--arch", "resnet18",
                      "--weights", str(weights), "--freeze-backbone", "--image-size", SIZE,
                      "--epochs", "1", "--batch-size", "64", "--optimizer", "adam",
                      "--model-store", str(store)]) == 0
    assert train.cli(["--train", "--model", "filter", "--data-dir", str(folder),
                      "--outliers-dir", str(others), "--image-size", SIZE, "--epochs", "1",
                      "--optimizer", "adam", "--model-store", str(store)]) == 0
    return {"folder": folder, "weights": weights, "store": ModelStore(store)}


def test_a_large_photo_trains_as_it_is_served(tmp_path):
    """No train/serve skew for photos: a large JPEG in the folder becomes the same model
    input in the training data as in a serving worker (decoded at a reduced scale alike)."""
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for name in ("a", "b"):
            folder = tmp_path / "data" / split / name
            folder.mkdir(parents=True)
            pixels = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)
            big = Image.fromarray(pixels).resize((2400, 1800), Image.Resampling.BICUBIC)
            big.save(folder / "photo.jpg", quality=90)
    data = load_dataset(tmp_path / "data", image_size=64)
    predictor = Predictor("classifier", "v0", build_model(architecture(3, 2)),
                          {"classes": ["a", "b"]}, data.preprocessing)
    served = predictor.canonical([(tmp_path / "data" / "train" / "a" / "photo.jpg").read_bytes()])
    assert torch.equal(served[0], data.train.images[0])


def _card(store: ModelStore, name: str) -> dict:
    """The card of version v1 of `name`."""
    return json.loads((store.root / name / "v1" / "card.json").read_text())


def test_card_records_the_backbone_and_its_input(photo_domain):
    """Serving rebuilds what training built: architecture, input size, channels and
    normalisation are in the card; the frozen backbone kept the weights it started from."""
    store, weights = photo_domain["store"], photo_domain["weights"]
    card = _card(store, "classifier")
    assert card["architecture"]["name"] == "resnet18"
    assert card["architecture"]["num_outputs"] == len(DOMAIN)
    assert card["architecture"]["trainable_parameters"] == 512 * len(DOMAIN) + len(DOMAIN)
    assert card["classes"] == sorted(DOMAIN)
    assert card["preprocessing"]["mode"] == "RGB"
    assert card["preprocessing"]["size"] == int(SIZE)
    assert card["preprocessing"]["mean"] == [0.485, 0.456, 0.406]
    assert card["training"]["freeze_backbone"] is True
    assert card["training"]["weights"] == str(weights)
    served = Predictor.from_store("classifier", store=store).model.state_dict()
    start = torch.load(weights, weights_only=True)
    assert torch.equal(served["layer4.1.conv2.weight"], start["layer4.1.conv2.weight"])
    assert torch.equal(served["conv1.weight"], start["conv1.weight"])
    assert served["fc.weight"].shape == (len(DOMAIN), 512)


def test_photo_filter_card_reports_acceptance_and_held_out_auroc(photo_domain):
    """The photo filter's card: acceptance of unseen domain photos and AUROC on held-out
    negatives, the user's held-out pictures among them."""
    card = _card(photo_domain["store"], "filter")
    metrics = card["metrics"]
    assert card["preprocessing"]["mode"] == "RGB"
    assert 0.0 <= metrics["in_domain_acceptance"] <= 1.0
    assert metrics["acceptance_images"] == 12 * len(DOMAIN)  # the half the threshold never saw
    assert 0.0 <= metrics["held_out_auroc"] <= 1.0
    assert metrics["kinds"]["outliers_dir"]["held_out"] is True
    assert metrics["kinds"]["outliers_dir"]["images"] > 0
    assert metrics["kinds"]["charts"]["held_out"] is True
    assert card["training"]["outliers_dir"].endswith("not-products")


@pytest.fixture
def served_domain(photo_domain, redis_server, tmp_path):
    """A worker and the web tier on the domain's store; yields (test client, headers)."""
    database = f"sqlite:///{tmp_path / 'sieve.db'}"
    upgrade(database)
    store = str(photo_domain["store"].root)
    worker = Worker("photos", {"REDIS_URL": redis_server.url,
                               "CELERY_BROKER_URL": redis_server.url,
                               "CELERY_RESULT_BACKEND": redis_server.url,
                               "DATABASE_URL": database, "MODEL_STORE_URL": store,
                               "SIEVE_WORKER_METRICS_PORT": "0"}, tmp_path)
    app = create_app({"TESTING": True, "SECRET_KEY": "test-secret-key-of-some-length",
                      "DATABASE_URL": database, "REDIS_URL": redis_server.url,
                      "MODEL_STORE_URL": store, "SIEVE_RATE_LIMIT": "100000/minute"})
    with app.app_context():
        user = create_user("photos@example.com", "a long enough password", False)
        token, _ = create_token(user.id, "tests", ("predict",))
    worker.start()
    try:
        yield app.test_client(), {"Authorization": f"Bearer {token}"}
    finally:
        worker.stop()
        app.extensions["sieve"].listener.close()


def test_uploaded_photo_is_classified_by_name_through_the_service(photo_domain,
                                                                  served_domain):
    """Photos the filter accepts go through the API and a real worker and come back with
    the class, by name, that the published model gives them here."""
    client, headers = served_domain
    store = photo_domain["store"]
    classifier = Predictor.from_store("classifier", store=store)
    filter_ = Predictor.from_store("filter", store=store)
    photos = [p.read_bytes() for name in DOMAIN
              for p in sorted((photo_domain["folder"] / "val" / name).iterdir())[:4]]
    verdicts = filter_.filter_verdicts(photos)
    accepted = [p for p, v in zip(photos, verdicts, strict=True) if v["accepted"]]
    assert accepted, "the filter turns away every domain photo"
    expected = classifier.classify(accepted[:4])
    answer = client.post("/api/v1/predictions?wait=30", headers=headers,
                         data={"image": [(io.BytesIO(p), f"{i}.jpg")
                                         for i, p in enumerate(accepted[:4])]},
                         content_type="multipart/form-data")
    assert answer.status_code == 201, answer.get_data(as_text=True)
    items = answer.get_json()["items"]
    assert [p["state"] for p in items] == ["done"] * len(items), items
    assert [p["label"] for p in items] == [e["class"] for e in expected]
    assert all(p["label"] in DOMAIN for p in items)


def test_the_sagemaker_archive_serves_the_backbone_as_the_container_would(photo_domain,
                                                                        tmp_path):
    """The archive of the ResNet-18 classifier and the photo filter, unpacked into an empty
    folder and started from its code/ alone, gives the domain's photos the verdicts and
    classes that the published models give them here."""
    store = photo_domain["store"]
    archive = tmp_path / "model.tar.gz"
    build_model_archive(store, "classifier", None, archive, with_filter=True)
    folder = safe_extract(archive, tmp_path / "model")
    photos = [p.read_bytes() for name in DOMAIN
              for p in sorted((photo_domain["folder"] / "val" / name).iterdir())[:2]]
    verdicts = Predictor.from_store("filter", store=store).filter_verdicts(photos)
    assert any(v["accepted"] for v in verdicts), "the filter turns away every domain photo"
    classes = Predictor.from_store("classifier", store=store).classify(photos)
    answers = run_handler(folder, tmp_path, [(p, "image/jpeg") for p in photos])
    for answer, verdict, expected in zip(answers, verdicts, classes, strict=True):
        (prediction,) = answer["body"]["predictions"]
        assert prediction["filter"]["accepted"] == verdict["accepted"]
        assert prediction["filter"]["score"] == pytest.approx(verdict["score"], abs=1e-5)
        if verdict["accepted"]:
            assert prediction["status"] == "done"
            assert prediction["class"] == expected["class"]
        else:
            assert prediction["status"] == "rejected" and "class" not in prediction
