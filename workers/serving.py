"""The models a serving worker runs: loaded once per process, fed by micro-batchers.

Decoding and preprocessing run in the task's own thread (a broken image fails only its
own prediction); the forward pass runs in the model's batch thread.
"""

import logging
import threading
from collections import OrderedDict

import torch

from training.predict import Predictor
from training.store import StoreError, open_store
from workers.batching import MicroBatcher

log = logging.getLogger(__name__)

FILTER, CLASSIFIER = "filter", "classifier"
CANONICAL_CACHE = 1024


class ModelUnavailable(RuntimeError):
    """No usable version of a model: the message says how to train one."""


class ServedModels:
    """The filter and the classifier of one worker process, loaded on first use."""

    def __init__(self, store_url: str | None = None, max_batch: int = 32,
                 max_wait: float = 0.002):
        self.store_url, self.max_batch, self.max_wait = store_url, max_batch, max_wait
        self._lock = threading.Lock()
        self._predictors: dict[str, Predictor] = {}
        self._batchers: dict[str, MicroBatcher] = {}
        # Preprocessed images by prediction id: the classifier step reuses what the filter
        # step decoded when both models preprocess alike (and the same process runs both).
        self._canonical: OrderedDict = OrderedDict()
        self._canonical_lock = threading.Lock()

    def predictor(self, name: str) -> Predictor:
        """The loaded model `name`, loading the served version on first use."""
        with self._lock:
            if name not in self._predictors:
                try:
                    predictor = Predictor.from_store(name, store=open_store(self.store_url))
                except StoreError as exc:
                    raise ModelUnavailable(str(exc)) from exc
                predictor.model.eval()
                self._predictors[name] = predictor
                self._batchers[name] = MicroBatcher(
                    lambda batch, p=predictor: list(p.probabilities(torch.stack(batch))),
                    self.max_batch, self.max_wait, name)
                log.info("serving %s %s", name, predictor.version)
            return self._predictors[name]

    def warm_up(self) -> None:
        """Load both models now, logging (not raising) when one is missing."""
        for name in (FILTER, CLASSIFIER):
            try:
                self.predictor(name)
            except ModelUnavailable as exc:
                log.warning("%s", exc)

    def _preprocess(self, predictor: Predictor, data: bytes, key: str | None):
        """The image in the model's input form, reused by key when already made."""
        with self._canonical_lock:
            cached = self._canonical.get(key) if key else None
        if cached is not None and cached[0] == predictor.preprocessing:
            return cached[1]
        canonical = predictor.canonical([data])[0]
        if key:
            with self._canonical_lock:
                self._canonical[key] = (predictor.preprocessing, canonical)
                while len(self._canonical) > CANONICAL_CACHE:
                    self._canonical.popitem(last=False)
        return canonical

    def _forward(self, name: str, data: bytes, timeout: float, key: str | None):
        """Preprocess here, then get the image's row from one (batched) forward pass."""
        predictor = self.predictor(name)
        batcher = self._batchers[name]
        batcher.announce()
        try:
            canonical = self._preprocess(predictor, data, key)
        except BaseException:
            batcher.withdraw()
            raise
        return predictor, batcher(canonical, timeout, announced=True)

    def screen(self, data: bytes, timeout: float, key: str | None = None) -> dict:
        """The filter's verdict on one image (`key`: the prediction id, for reuse)."""
        predictor, score = self._forward(FILTER, data, timeout, key)
        return predictor.describe_score(score)

    def classify(self, data: bytes, timeout: float, top_k: int = 3,
                 key: str | None = None) -> dict:
        """The classifier's answer for one image."""
        predictor, row = self._forward(CLASSIFIER, data, timeout, key)
        with self._canonical_lock:
            self._canonical.pop(key, None)  # the last step: no one needs it any more
        return predictor.describe_class(row, top_k)

    def batch_stats(self) -> dict:
        """Batches run and images served per model, for logs and benchmarks."""
        return {name: {"batches": b.batches, "images": b.items}
                for name, b in self._batchers.items()}
