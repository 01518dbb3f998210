"""Micro-batching: items that wait at the same time are run together.

Threads `submit` one item each and wait on a future; one batch thread takes whatever is
waiting (up to `max_size`), runs it in one call and hands each thread its result. While a
batch runs, new items queue up, so the batch size follows the load by itself. The workers
use it for whole pipeline steps (the prediction ids of single-image tasks, see
`workers.tasks.steps`) and, under those, for the forward passes of each model.

A thread may `announce` an item before it prepares it. The batch thread waits (at most
`max_wait` seconds after the first item) only while announced items are on their way: a
lone item never waits for company that is not coming. And when nothing else is waiting or
on its way and no batch is running, a thread runs its item in its own thread: no
hand-over between threads for the common case of a quiet worker.
"""

import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future

from workers import metrics

log = logging.getLogger(__name__)


class MicroBatcher:
    """Collects items from many threads and runs them through `run` in batches."""

    def __init__(self, run: Callable[[list], list], max_size: int = 32,
                 max_wait: float = 0.002, name: str = "model", observed: bool = True):
        if max_size < 1:
            raise ValueError("the maximum batch size must be at least 1")
        self.run, self.max_size, self.max_wait, self.name = run, max_size, max_wait, name
        self.observed = observed  # in the batch metrics (the forward passes)
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._count_lock = threading.Lock()
        self._model_lock = threading.Lock()  # one forward pass at a time
        self._incoming = 0
        self.batches = 0
        self.items = 0

    def announce(self) -> None:
        """Say that an item is being prepared: `submit(item, announced=True)` or `withdraw`."""
        with self._count_lock:
            self._incoming += 1

    def withdraw(self) -> None:
        """An announced item will not come (its preparation failed)."""
        with self._count_lock:
            self._incoming -= 1

    def submit(self, item, announced: bool = False) -> Future:
        """Queue one item; the future holds its result (or the batch's exception)."""
        self._ensure_thread()
        future: Future = Future()
        if announced:
            self.withdraw()
        self._queue.put((item, future))
        return future

    def __call__(self, item, timeout: float, announced: bool = False):
        """Run one item, batched with whatever waits with it; TimeoutError after `timeout`
        seconds of waiting for its batch."""
        if announced:
            self.withdraw()
        if self._incoming <= 0 and self._queue.empty() and self._model_lock.acquire(False):
            try:
                return self._run([item])[0]
            finally:
                self._model_lock.release()
        future = self.submit(item)
        try:
            return future.result(timeout=timeout)
        except TimeoutError:
            future.cancel()  # the batch thread skips it if it has not started
            raise

    def run_many(self, items: list, timeout: float) -> list:
        """Run items that come together (one submission's images) in this thread, in
        forward passes of at most max_size; TimeoutError when the model stays busy with
        other batches for `timeout` seconds."""
        results: list = []
        for start in range(0, len(items), self.max_size):
            if not self._model_lock.acquire(timeout=timeout):
                raise TimeoutError(f"the {self.name} model stayed busy for {timeout:g} s")
            try:
                results.extend(self._run(items[start:start + self.max_size]))
            finally:
                self._model_lock.release()
        return results

    def _ensure_thread(self) -> None:
        """Start the batch thread on first use (after a fork, in the process that uses it)."""
        with self._start_lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, daemon=True,
                                                name=f"batch-{self.name}")
                self._thread.start()

    def _collect(self) -> list:
        """Block for the first item, then take what is waiting, and what is announced
        and arrives within max_wait."""
        batch = [self._queue.get()]
        deadline = time.monotonic() + self.max_wait
        while len(batch) < self.max_size:
            try:
                batch.append(self._queue.get_nowait())
                continue
            except queue.Empty:
                pass
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._incoming <= 0:
                break
            try:
                batch.append(self._queue.get(timeout=min(remaining, 0.0005)))
            except queue.Empty:
                continue
        return batch

    def _run(self, items: list) -> list:
        """One forward pass (the caller holds the model lock), counted and logged."""
        started = time.perf_counter()
        results = self.run(items)
        seconds = time.perf_counter() - started
        self.batches += 1
        self.items += len(items)
        if self.observed:
            metrics.BATCH_SIZE.labels(self.name).observe(len(items))
            metrics.FORWARD_SECONDS.labels(self.name).observe(seconds)
            log.info("%s batch of %d in %.1f ms", self.name, len(items), seconds * 1000)
        else:
            log.info("%s of %d in %.1f ms", self.name, len(items), seconds * 1000)
        return results

    def _loop(self) -> None:
        """Run batches for as long as the process lives."""
        while True:
            batch = [(item, f) for item, f in self._collect() if f.set_running_or_notify_cancel()]
            if not batch:
                continue
            try:
                with self._model_lock:
                    results = self._run([item for item, _ in batch])
            except Exception as exc:  # noqa: BLE001 - handed to every waiting task
                log.exception("%s batch of %d failed", self.name, len(batch))
                for _, future in batch:
                    future.set_exception(exc)
                continue
            for (_, future), result in zip(batch, results, strict=True):
                future.set_result(result)
