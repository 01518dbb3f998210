"""SageMaker inference handler for the PyTorch container: Sieve's filter and classifier.

Packaged as `code/inference.py` of a model.tar.gz (training/sagemaker/package.py) next to
the project modules it imports, so an endpoint preprocesses exactly as the workers do.
The container calls, per the SageMaker PyTorch inference toolkit's contract:

    model_fn(model_dir)                 once: load the classifier (and the filter)
    input_fn(request_body, content_type)
    predict_fn(data, model)
    output_fn(prediction, accept)       -> (JSON bytes, "application/json")

Requests: one image as image/png, image/jpeg or application/x-image; or application/json
{"image": "<base64>"} or {"images": ["<base64>", ...]}, with an optional
"model": "filter" | "classifier" | "both" (default: both when the filter is packaged).
Answer: {"predictions": [...]}, one entry per image, with "status" "done" (class,
probability, top_k, and the filter's verdict when it ran) or "rejected" (the filter's
score and threshold).
"""

import base64
import binascii
import json
from pathlib import Path

from training.predict import Predictor
from training.preprocess import ImageError

IMAGE_TYPES = ("image/png", "image/jpeg", "application/x-image")
JSON = "application/json"
SUPPORTED = (*IMAGE_TYPES, JSON)
CHOICES = ("both", "filter", "classifier")
PACKAGE_INFO = "sieve-package.json"

try:  # inside the SageMaker container: errors become HTTP answers with their status
    from sagemaker_inference.errors import GenericInferenceToolkitError as _Base
except ImportError:  # anywhere else (tests, local runs)
    class _Base(Exception):
        """Stand-in for the toolkit's error with an HTTP status."""

        def __init__(self, status_code: int, message: str = "", phrase: str = ""):
            super().__init__(message)
            self.status_code, self.message, self.phrase = status_code, message, phrase


class RequestError(_Base):
    """A request the handler cannot answer, with its HTTP status and what to send instead."""

    def __init__(self, status_code: int, message: str):
        super().__init__(status_code, message, message)
        self.message = message

    def __str__(self) -> str:
        return self.message


def model_fn(model_dir: str) -> dict:
    """Load the packaged models: {"classifier": Predictor, "filter": Predictor or None}."""
    folder = Path(model_dir)
    info = json.loads((folder / PACKAGE_INFO).read_text())
    loaded = {"filter": None}
    for role, entry in info["models"].items():
        card = json.loads((folder / f"{role}.json").read_text())
        loaded[role] = Predictor.from_checkpoint(folder / f"{role}.pt", entry["name"],
                                                 entry["version"], card)
    return loaded


def _decode(text) -> bytes:
    """Base64 text to bytes, or a 400 error."""
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, TypeError, ValueError) as exc:
        raise RequestError(400, f"an image in the JSON body is not valid base64: {exc}") from exc


def input_fn(request_body, content_type: str) -> dict:
    """The request as {"images": [bytes, ...], "model": choice or None}."""
    kind = (content_type or "").split(";")[0].strip().lower()
    if kind in IMAGE_TYPES:
        return {"images": [bytes(request_body)], "model": None}
    if kind != JSON:
        raise RequestError(415, f"unsupported content type {content_type!r}: send one of "
                                f"{', '.join(SUPPORTED)}")
    try:
        body = json.loads(request_body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise RequestError(400, f"the body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict) or not ("image" in body or "images" in body):
        raise RequestError(400, 'expected {"image": "<base64>"} or {"images": [...]}')
    encoded = body["images"] if "images" in body else [body["image"]]
    if not isinstance(encoded, list) or not encoded:
        raise RequestError(400, '"images" must be a non-empty list of base64 strings')
    choice = body.get("model")
    if choice is not None and choice not in CHOICES:
        raise RequestError(400, f"unknown model {choice!r}: use one of {', '.join(CHOICES)}")
    return {"images": [_decode(text) for text in encoded], "model": choice}


def predict_fn(data: dict, model: dict) -> list[dict]:
    """The filter in front (when packaged and asked for), then the classifier."""
    choice = data.get("model") or ("both" if model["filter"] else "classifier")
    if choice in ("both", "filter") and model["filter"] is None:
        raise RequestError(400, "this endpoint was packaged without the filter: "
                                'ask for "model": "classifier"')
    images = data["images"]
    try:
        verdicts = (model["filter"].filter_verdicts(images) if choice != "classifier"
                    else [None] * len(images))
        if choice == "filter":
            return [{"status": "screened", "filter": v} for v in verdicts]
        accepted = [i for i, v in enumerate(verdicts) if v is None or v["accepted"]]
        answers = model["classifier"].classify([images[i] for i in accepted]) if accepted else []
    except ImageError as exc:
        raise RequestError(400, f"not a usable image: {exc}") from exc
    results = [{"status": "rejected", "filter": v} for v in verdicts]
    for index, answer in zip(accepted, answers, strict=True):
        results[index] = {"status": "done", **answer, "filter": verdicts[index]}
    return results


def output_fn(prediction: list[dict], accept: str | None) -> tuple[bytes, str]:
    """JSON, whatever the client accepts as long as JSON is among it."""
    kinds = [part.split(";")[0].strip().lower() for part in (accept or "*/*").split(",")]
    if not any(k in (JSON, "*/*", "application/*", "") for k in kinds):
        raise RequestError(406, f"cannot answer as {accept!r}: only {JSON} is offered")
    return json.dumps({"predictions": prediction}).encode(), JSON
