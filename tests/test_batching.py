"""The micro-batcher: prediction steps waiting together run as one."""

import threading
import time

import pytest

from workers.batching import MicroBatcher


def test_waiting_items_share_a_batch():
    seen = []

    def run(batch):
        seen.append(len(batch))
        time.sleep(0.05)  # a forward pass: meanwhile the other threads queue up
        return [x * 2 for x in batch]

    batcher = MicroBatcher(run, max_size=8)
    results = {}

    def call(i):
        results[i] = batcher([i], timeout=10)[0]

    threads = [threading.Thread(target=call, args=(i,)) for i in range(24)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert results == {i: i * 2 for i in range(24)}
    assert max(seen) > 1 and max(seen) <= 8
    assert batcher.items == 24 and batcher.batches == len(seen) < 24


def test_a_failing_batch_fails_its_callers_and_the_batcher_goes_on():
    calls = []

    def run(batch):
        calls.append(batch)
        if batch == ["bad"]:
            raise RuntimeError("forward pass failed")
        return batch

    batcher = MicroBatcher(run, max_size=4)
    with pytest.raises(RuntimeError, match="forward pass failed"):
        batcher(["bad"], timeout=10)
    assert batcher(["good"], timeout=10) == ["good"]


def test_a_caller_that_gives_up_is_skipped():
    release = threading.Event()

    def run(batch):
        release.wait(timeout=10)
        return batch

    batcher = MicroBatcher(run, max_size=1)
    first = batcher.submit("first")  # occupies the batch thread
    with pytest.raises(TimeoutError):
        batcher(["late"], timeout=0.1)
    release.set()
    assert first.result(timeout=10) == "first"
    assert batcher(["next"], timeout=10) == ["next"]
    assert batcher.items == 2  # "late" was cancelled before its batch ran


def test_batch_size_must_be_positive():
    with pytest.raises(ValueError, match="at least 1"):
        MicroBatcher(lambda b: b, max_size=0)


def test_lone_items_run_at_once_in_their_own_thread_in_batches_of_at_most_max_size():
    seen = []
    batcher = MicroBatcher(lambda b: seen.append((threading.current_thread(), len(b))) or b,
                           max_size=8)
    started = time.monotonic()
    assert batcher(["alone"], timeout=10) == ["alone"]
    assert time.monotonic() - started < 1.0
    assert batcher(list(range(20)), timeout=10) == list(range(20))
    assert seen == [(threading.current_thread(), n) for n in (1, 8, 8, 4)]
    assert batcher.thread is None  # nothing was handed over
