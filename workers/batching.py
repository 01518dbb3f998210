"""Micro-batching: items that wait at the same time are run together.

Threads hand over items (prediction ids) and wait; one batch thread takes whatever is
waiting (up to `max_size`), runs it in one call and hands each thread its results. While
a batch runs, new items queue up, so the batch size follows the load by itself. When
nothing waits and no batch runs, a thread runs its items in its own thread: no hand-over
between threads, and no wait, for the common case of a quiet worker.
"""

import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future

log = logging.getLogger(__name__)


class MicroBatcher:
    """Collects items from many threads and runs them through `run` in batches."""

    def __init__(self, run: Callable[[list], list], max_size: int = 32, name: str = "step"):
        if max_size < 1:
            raise ValueError("the maximum batch size must be at least 1")
        self.run, self.max_size, self.name = run, max_size, name
        self.queue: queue.SimpleQueue = queue.SimpleQueue()
        self.thread: threading.Thread | None = None
        self.start_lock = threading.Lock()
        self.running = threading.Lock()  # one batch at a time
        self.batches = 0
        self.items = 0

    def submit(self, item) -> Future:
        """Queue one item; the future holds its result (or the batch's exception)."""
        with self.start_lock:  # started on first use: after a fork, in the child
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self._loop, daemon=True,
                                               name=f"batch-{self.name}")
                self.thread.start()
        future: Future = Future()
        self.queue.put((item, future))
        return future

    def __call__(self, items: list, timeout: float) -> list:
        """Run items, batched with whatever waits with them: their results, in order.
        TimeoutError after `timeout` seconds of waiting for their batches."""
        if self.queue.empty() and self.running.acquire(False):
            try:
                return [result for start in range(0, len(items), self.max_size)
                        for result in self._run(items[start:start + self.max_size])]
            finally:
                self.running.release()
        futures = [self.submit(item) for item in items]
        deadline = time.monotonic() + timeout
        try:
            return [f.result(timeout=max(0.0, deadline - time.monotonic())) for f in futures]
        except TimeoutError:
            for future in futures:
                future.cancel()  # the batch thread skips those it has not started
            raise

    def _run(self, items: list) -> list:
        """One batch (the caller holds `running`), counted and logged."""
        started = time.perf_counter()
        results = self.run(items)
        self.batches += 1
        self.items += len(items)
        log.info("%s of %d in %.1f ms", self.name, len(items),
                 (time.perf_counter() - started) * 1000)
        return results

    def _loop(self) -> None:
        """Run batches of what waits for as long as the process lives."""
        while True:
            batch = [self.queue.get()]
            while len(batch) < self.max_size:
                try:
                    batch.append(self.queue.get_nowait())
                except queue.Empty:
                    break
            batch = [(item, f) for item, f in batch if f.set_running_or_notify_cancel()]
            if not batch:
                continue
            try:
                with self.running:
                    results = self._run([item for item, _ in batch])
            except Exception as exc:  # noqa: BLE001 - handed to every waiting task
                log.exception("%s of %d failed", self.name, len(batch))
                for _, future in batch:
                    future.set_exception(exc)
                continue
            for (_, future), result in zip(batch, results, strict=True):
                future.set_result(result)
