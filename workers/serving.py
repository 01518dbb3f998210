"""The models a serving worker runs: loaded once per process.

A pipeline step hands over the images of the predictions it runs together (see
`workers.tasks.steps`): each is decoded and preprocessed (a broken image fails only its
own prediction), then all go through the model in forward passes of at most `max_batch`,
one pass at a time per model.

Switching versions: `workers.reloading.Reloader` decides when to look (an announcement
from the registry, or its timer) and calls `switch`, which loads and verifies the new
version in the reloader's thread while predictions go on with the old one, then swaps it
in between two forward passes. Each queued image carries the model it was preprocessed
for, so an image in flight during the swap is still answered, by the version its result
names.
"""

import logging
import threading
import time
from collections import OrderedDict
from datetime import UTC, datetime

import torch
from PIL import Image

from sieve.images import ImageError
from sieve.store import Store, StoreError, open_store
from training.predict import Predictor
from workers import metrics

log = logging.getLogger(__name__)

FILTER, CLASSIFIER = "filter", "classifier"
CANONICAL_CACHE = 1024


class ModelUnavailable(RuntimeError):
    """No usable version of a model: the message says how to train one."""


class ServedModels:
    """The filter and the classifier of one worker process, loaded on first use."""

    def __init__(self, store_url: str | None = None, max_batch: int = 32):
        self.store_url, self.max_batch = store_url, max_batch
        self._lock = threading.Lock()
        self._store: Store | None = None
        self._predictors: dict[str, Predictor] = {}
        self.since: dict[str, str] = {}  # model -> when its version began to serve (UTC)
        self._passes: dict[str, ForwardPasses] = {}
        # Preprocessed images by prediction id: the classifier step reuses what the filter
        # step decoded when both models preprocess alike (and the same process runs both).
        self._canonical: OrderedDict = OrderedDict()
        self._canonical_lock = threading.Lock()

    def store(self) -> Store:
        """The model store, opened once (an S3 client is reused across threads)."""
        if self._store is None:
            self._store = open_store(self.store_url)
        return self._store

    def predictor(self, name: str) -> Predictor:
        """The loaded model `name`, loading the served version on first use."""
        with self._lock:
            if name not in self._predictors:
                try:
                    predictor = Predictor.from_store(name, store=self.store())
                except StoreError as exc:
                    raise ModelUnavailable(str(exc)) from exc
                self._install(name, predictor)
                log.info("serving %s %s", name, predictor.version)
            return self._predictors[name]

    def _install(self, name: str, predictor: Predictor) -> None:
        """Make `predictor` the one that serves `name` (the caller holds the lock)."""
        self._predictors[name] = predictor
        self.since[name] = datetime.now(UTC).isoformat(timespec="seconds")
        if name not in self._passes:
            self._passes[name] = ForwardPasses(name, self.max_batch)
        metrics.serving(name, predictor.version)

    def serving(self) -> dict[str, str]:
        """The version each loaded model serves now."""
        with self._lock:
            return {name: p.version for name, p in self._predictors.items()}

    def switch(self, name: str, version: str) -> bool:
        """Load `version` of `name`, check that it answers, and swap it in; False when it
        is already served. Raises (and changes nothing) when the version cannot be loaded:
        StoreError for a missing or damaged file, whatever torch raises for a bad model."""
        current = self.serving().get(name)
        if current == version:
            return False
        predictor = Predictor.from_store(name, version, self.store())
        _check_answers(predictor)
        with self._lock:
            self._install(name, predictor)
        log.info("serving %s %s (was %s)", name, version, current)
        return True

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

    def _forward_many(self, name: str, datas: list[bytes], timeout: float,
                      keys: list[str]) -> tuple[Predictor, list]:
        """Each image's row from forward passes of them all (at most `max_batch` each),
        or the ImageError that its decoding raised."""
        predictor = self.predictor(name)
        results: list = [None] * len(datas)
        ready = []
        for index, (data, key) in enumerate(zip(datas, keys, strict=True)):
            try:
                ready.append((index, self._preprocess(predictor, data, key)))
            except ImageError as exc:
                results[index] = exc
        rows = self._passes[name].run([(predictor, c) for _, c in ready], timeout)
        for (index, _), row in zip(ready, rows, strict=True):
            results[index] = row
        return predictor, results

    def filter_many(self, datas: list[bytes], timeout: float,
                    keys: list[str]) -> list[dict | ImageError]:
        """The filter's verdicts on images (`keys`: their prediction ids, for reuse)."""
        predictor, rows = self._forward_many(FILTER, datas, timeout, keys)
        return [row if isinstance(row, ImageError) else predictor.describe_score(row)
                for row in rows]

    def classify_many(self, datas: list[bytes], timeout: float, top_k: int,
                      keys: list[str]) -> list[dict | ImageError]:
        """The classifier's answers for images."""
        predictor, rows = self._forward_many(CLASSIFIER, datas, timeout, keys)
        with self._canonical_lock:
            for key in keys:
                self._canonical.pop(key, None)
        return [row if isinstance(row, ImageError) else predictor.describe_class(row, top_k)
                for row in rows]

    def batch_stats(self) -> dict:
        """Batches run and images served per model, for logs and benchmarks."""
        return {name: {"batches": p.batches, "images": p.items}
                for name, p in self._passes.items()}


class ForwardPasses:
    """The forward passes of one model: one at a time, of at most `max_batch` images."""

    def __init__(self, name: str, max_batch: int):
        self.name, self.max_batch = name, max_batch
        self.lock = threading.Lock()
        self.batches = 0
        self.items = 0

    def run(self, items: list[tuple[Predictor, torch.Tensor]], timeout: float) -> list:
        """Each item's output row; TimeoutError when the model stays busy with other
        passes for `timeout` seconds."""
        results: list = []
        for start in range(0, len(items), self.max_batch):
            if not self.lock.acquire(timeout=timeout):
                raise TimeoutError(f"the {self.name} model stayed busy for {timeout:g} s")
            try:
                started = time.perf_counter()
                results.extend(_run_batch(items[start:start + self.max_batch]))
                seconds = time.perf_counter() - started
            finally:
                self.lock.release()
            size = min(self.max_batch, len(items) - start)
            self.batches += 1
            self.items += size
            metrics.BATCH_SIZE.labels(self.name).observe(size)
            metrics.FORWARD_SECONDS.labels(self.name).observe(seconds)
            log.info("%s batch of %d in %.1f ms", self.name, size, seconds * 1000)
        return results


def _check_answers(predictor: Predictor) -> None:
    """A forward pass of a blank image: a model that loads but cannot answer (wrong
    shapes, wrong outputs) is refused before it serves anything."""
    blank = Image.new("L", (predictor.preprocessing.size,) * 2)
    row = predictor.probabilities(predictor.canonical([blank]))[0]
    expected = () if "threshold" in predictor.card else (len(predictor.classes),)
    if tuple(row.shape) != expected or not bool(torch.isfinite(row).all()):
        raise StoreError(f"{predictor.name} {predictor.version} answers a blank image with "
                         f"an output of shape {tuple(row.shape)}, not {expected}")


def _run_batch(items: list[tuple[Predictor, torch.Tensor]]) -> list:
    """Forward passes for (model, image) pairs: one per model version in the batch (two
    only around a reload), results in the order of the items."""
    results: list = [None] * len(items)
    groups: dict[int, tuple[Predictor, list[int]]] = {}
    for index, (predictor, _) in enumerate(items):
        groups.setdefault(id(predictor), (predictor, []))[1].append(index)
    for predictor, indices in groups.values():
        rows = predictor.probabilities(torch.stack([items[i][1] for i in indices]))
        for index, row in zip(indices, rows, strict=True):
            results[index] = row
    return results
