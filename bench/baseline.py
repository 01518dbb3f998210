"""The classic synchronous design, as a baseline for bench.service.

A front Flask app takes each upload and forwards it, with one HTTP request per image, to
a model Flask app that runs the filter and then the classifier and answers at once:

    MODEL_STORE_URL=var/models gunicorn -w 1 --threads 8 -b 127.0.0.1:9001 \\
        'bench.baseline:create_model_app()'
    BASELINE_MODEL_URL=http://127.0.0.1:9001 gunicorn -w 2 --threads 8 -b 127.0.0.1:9000 \\
        'bench.baseline:create_front_app()'
    curl -F image=@shirt.png http://127.0.0.1:9000/upload

It uses the same models and the same preprocessing as the service; it has no queue, no
database and no retries: what it saves in work it pays in coupling.
"""

import os
import threading

import requests
from flask import Flask, abort, jsonify, request


def create_model_app(store_url: str | None = None) -> Flask:
    """The model service: POST /predict with the image bytes as the body."""
    import torch

    from sieve.store import open_store
    from training.predict import Predictor
    from training.preprocess import ImageError

    torch.set_num_threads(1)
    store = open_store(store_url or os.environ.get("MODEL_STORE_URL"))
    filter_ = Predictor.from_store("filter", store=store)
    classifier = Predictor.from_store("classifier", store=store)
    lock = threading.Lock()  # one forward pass at a time, as in a worker
    app = Flask("sieve-baseline-model")

    @app.post("/predict")
    def predict():
        """Filter, then classifier when accepted; one image per request."""
        data = request.get_data()
        try:
            canonical = filter_.canonical([data])
        except ImageError as exc:
            abort(422, str(exc))
        with lock:
            verdict = filter_.describe_score(filter_.probabilities(canonical)[0])
            if not verdict["accepted"]:
                return jsonify(state="rejected", filter=verdict)
            answer = classifier.describe_class(classifier.probabilities(canonical)[0])
        return jsonify(state="done", filter=verdict, **answer)

    return app


def create_front_app(model_url: str | None = None) -> Flask:
    """The front: POST /upload (multipart `image`), forwarded to the model service."""
    model_url = (model_url or os.environ["BASELINE_MODEL_URL"]).rstrip("/")
    app = Flask("sieve-baseline-front")
    local = threading.local()

    @app.post("/upload")
    def upload():
        """Forward one image and relay the model service's answer."""
        image = request.files.get("image")
        if image is None:
            abort(400, "send the image in the multipart field 'image'")
        if not hasattr(local, "session"):
            local.session = requests.Session()
        answer = local.session.post(f"{model_url}/predict", data=image.read(), timeout=60)
        return answer.content, answer.status_code, {"Content-Type": "application/json"}

    return app
