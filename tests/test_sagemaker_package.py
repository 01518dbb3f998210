"""The SageMaker model archive and its inference handler, run as the container would:
unpacked into a folder and imported by a fresh Python process that sees only `code/`."""

import base64
import json
import tarfile

import pytest

from tests.sagemaker_handler import run_handler
from training.sagemaker import package
from training.sagemaker.package import build_model_archive, safe_extract


@pytest.fixture(scope="module")
def unpacked(trained_store, tmp_path_factory):
    """The archive of the session's classifier with the filter in front, unpacked."""
    folder = tmp_path_factory.mktemp("sagemaker-package")
    archive = folder / "model.tar.gz"
    description = build_model_archive(trained_store, "classifier", None, archive,
                                      with_filter=True)
    assert description["models"] == {"classifier": {"name": "classifier", "version": "v1"},
                                     "filter": {"name": "filter", "version": "v1"}}
    return archive, safe_extract(archive, folder / "model")


def test_archive_layout(unpacked):
    """Weights and cards at the top; under code/ the handler, its requirements and exactly
    the project modules its imports reach, the shared preprocessing among them."""
    archive, _ = unpacked
    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
    assert {"classifier.pt", "classifier.json", "filter.pt", "filter.json",
            "sieve-package.json"} == {n for n in names if "/" not in n}
    modules = package.module_closure(package.HANDLER)
    assert {"training.predict", "training.preprocess", "training.checkpoint",
            "training.__init__"} <= set(modules)
    assert not any(m.startswith(("training.sagemaker", "training.train")) for m in modules)
    assert {n for n in names if "/" in n} == {
        "code/inference.py", "code/requirements.txt",
        *(f"code/{m.replace('.', '/')}.py" for m in modules)}


def test_archive_code_is_the_checkouts(unpacked):
    """The packed modules are this checkout's files, byte for byte; the requirements are
    those of their third-party imports, less what the container has."""
    _, folder = unpacked
    for module in package.module_closure(package.HANDLER):
        relative = module.replace(".", "/") + ".py"
        assert (folder / "code" / relative).read_bytes() == (package.ROOT / relative).read_bytes()
    requirements = (folder / "code" / "requirements.txt").read_text().split()
    assert any(r.startswith("pillow==") for r in requirements)
    assert not any(r.startswith(("torch", "numpy", "boto")) for r in requirements)


def test_module_closure_follows_every_import(tmp_path):
    """Imports at the top, inside functions, relative and of packages are followed, with
    the packages' __init__ modules; `if TYPE_CHECKING:` imports and other libraries are
    not."""
    files = {
        "app/__init__.py": "",
        "app/core.py": "import json\nfrom . import helpers\n"
                       "from typing import TYPE_CHECKING\n"
                       "if TYPE_CHECKING:\n    from app import typing_only\n"
                       "def later():\n    from app.sub import deep\n    return deep\n",
        "app/helpers.py": "import numpy\n",
        "app/typing_only.py": "",
        "app/unused.py": "",
        "app/sub/__init__.py": "from ..helpers import *\n",
        "app/sub/deep.py": "import app.sub\n",
        "entry.py": "import sys\nfrom app.core import later\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert package.module_closure(tmp_path / "entry.py", tmp_path) == [
        "app.__init__", "app.core", "app.helpers", "app.sub.__init__", "app.sub.deep"]


def test_handler_classifies_known_images(unpacked, known_images, tmp_path):
    """Known test images come back as their classes, as PNG and as base64 JSON."""
    _, folder = unpacked
    images = known_images[:5]
    requests = [(data, "image/png") for data, _ in images]
    requests.append((json.dumps({"images": [base64.b64encode(d).decode() for d, _ in images]})
                     .encode(), "application/json; charset=utf-8"))
    answers = run_handler(folder, tmp_path, requests)
    for answer, (_, label) in zip(answers, images, strict=False):
        (prediction,) = answer["body"]["predictions"]
        assert answer["kind"] == "application/json"
        assert prediction["status"] == "done" and prediction["class"] == label
        assert prediction["filter"]["accepted"] and prediction["version"] == "v1"
    batch = answers[-1]["body"]["predictions"]
    assert [p["class"] for p in batch] == [label for _, label in images]


def test_handler_rejects_outlier(unpacked, outlier_png, tmp_path):
    """The filter in front reports an outlier as rejected, with its score and threshold."""
    _, folder = unpacked
    (answer,) = run_handler(folder, tmp_path, [(outlier_png, "application/x-image")])
    (prediction,) = answer["body"]["predictions"]
    assert prediction["status"] == "rejected" and "class" not in prediction
    verdict = prediction["filter"]
    assert not verdict["accepted"] and verdict["score"] < verdict["threshold"]


@pytest.mark.parametrize(("body", "content_type", "status", "words"), [
    (b"a,b\n1,2\n", "text/csv", 415, "unsupported content type 'text/csv': send one of "
                                     "image/png, image/jpeg, application/x-image, "
                                     "application/json"),
    (b"{not json", "application/json", 400, "not valid JSON"),
    (b'{"image": "***"}', "application/json", 400, "not valid base64"),
    (b"not an image", "image/png", 400, "not a usable image"),
])
def test_handler_bad_requests(unpacked, tmp_path, body, content_type, status, words):
    """Unsupported or broken requests get a clear error with a status, never None."""
    _, folder = unpacked
    (answer,) = run_handler(folder, tmp_path, [(body, content_type)])
    assert answer["status"] == status and words in answer["error"]
