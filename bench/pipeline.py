"""The prediction pipeline against the queue itself: real chain vs a no-op chain.

    python -m bench.pipeline                         # models from MODEL_STORE_URL
    python -m bench.pipeline --images 1000 --model-store var/models

In one run, on a private redis-server and a fresh SQLite database, with serving workers
started as documented (`celery -A workers worker -Q filter,classify`, with the no-op tasks
of `bench.noop` added), one by default:

1. bare forward passes of the filter and the classifier on one image (batch of 1), and of
   a full batch, in this process before the worker starts;
2. a no-op two-task chain (`bench.noop`, whose worker app the benchmark starts) through the
   same queues:
   latency one at a time, then throughput with many in flight;
3. the real chain (store, record, filter, classifier, every state change written and
   published), measured the same way, from submission to the final event on pub/sub.

Targets: the real chain reaches at least 50% of the no-op chain's throughput, and adds at
most 10 ms p50 latency over the bare forward passes of both models.
"""

import argparse
import gc
import json
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import redis

from bench import noop
from bench.processes import Worker
from bench.report import machine, print_table
from bench.scratch import scratch
from sieve.config import get_settings
from sieve.database import Database
from sieve.models import FINAL_STATES
from workers.celery_app import create_celery
from workers.client import submit

THROUGHPUT_RATIO = 0.5
ADDED_P50_MS = 10.0
SENDERS = 4


def quantile_ms(seconds: list[float], q: float) -> float:
    """The q-quantile of durations in seconds, in milliseconds."""
    ordered = sorted(seconds)
    return 1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def forward_passes(store_url: str, images: list[bytes], repeats: int = 200) -> dict:
    """p50 of one-image forward passes of each model, and batched images per second."""
    import torch

    from sieve.store import open_store
    from training.predict import Predictor

    figures = {}
    for name in ("filter", "classifier"):
        predictor = Predictor.from_store(name, store=open_store(store_url))
        one = predictor.canonical(images[:1])
        batch = predictor.canonical(images[:32])
        for _ in range(10):
            predictor.probabilities(one)
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            predictor.probabilities(one)
            times.append(time.perf_counter() - started)
        started = time.perf_counter()
        for _ in range(20):
            predictor.probabilities(batch)
        figures[name] = {"p50": quantile_ms(times, 0.5),
                         "batched_per_s": 20 * len(batch) / (time.perf_counter() - started)}
        del predictor, one, batch
    torch.set_num_threads(1)  # leave the cores to the worker from here on
    return figures


class FinalEvents:
    """Arrival times of final states, from a pattern subscription on pub/sub.

    The thread blocks on the subscription and `wait` on a condition: neither polls, so
    that this process takes no CPU time from the service it measures while it waits."""

    def __init__(self, redis_url: str):
        self.times: dict[str, float] = {}
        self._arrived = threading.Condition()
        self._pubsub = redis.Redis.from_url(redis_url).pubsub(ignore_subscribe_messages=True)
        self._pubsub.psubscribe(**{"sieve:predictions:*": self.handle})
        self._thread = self._pubsub.run_in_thread(sleep_time=0.5, daemon=True)

    def handle(self, message) -> None:
        """Record the first final event of each prediction."""
        arrived = time.perf_counter()
        event = json.loads(message["data"])
        if event["state"] in FINAL_STATES:
            with self._arrived:
                self.times.setdefault(event["id"], arrived)
                self._arrived.notify_all()

    def wait(self, pid: str, timeout: float = 60) -> float:
        """The perf_counter reading at which `pid` reached its final state."""
        with self._arrived:
            if not self._arrived.wait_for(lambda: pid in self.times, timeout):
                raise AssertionError(f"timed out after {timeout:g} s waiting for {pid}")
            return self.times[pid]

    def stop(self) -> None:
        """End the subscription thread."""
        self._thread.stop()


def noop_chain(celery, count: int, samples: int) -> dict:
    """Latency one at a time and throughput with `count` in flight, for the no-op chain."""
    def chain(i: int):
        return (celery.signature(noop.FIRST, args=(i,), queue="filter")
                | celery.signature(noop.SECOND, queue="classify"))

    latencies = []
    for i in range(samples):
        started = time.perf_counter()
        chain(i).apply_async().get(timeout=30)
        latencies.append(time.perf_counter() - started)
    started = time.perf_counter()
    # Sent from this one thread: each send subscribes to its result through the app's
    # Redis result consumer, which is not safe to share between threads (results got
    # lost: celery/celery#4363). One thread sends faster than the worker runs chains.
    results = [chain(i).apply_async() for i in range(count)]
    [result.get(timeout=120) for result in results]  # no loop variable keeps one alive
    elapsed = time.perf_counter() - started
    # Results unsubscribe from Redis when collected (they sit in reference cycles): let
    # that happen while Redis is up, not in a later collection after it stopped.
    del results
    gc.collect()
    return {"p50": quantile_ms(latencies, 0.5), "p95": quantile_ms(latencies, 0.95),
            "per_s": count / elapsed}


def real_chain(celery, db: Database, finals: FinalEvents, images: list[bytes],
               samples: int) -> dict:
    """The same two measurements for real predictions, submitted as the web tier does."""
    def send(data: bytes) -> str:
        return submit(celery, db, data, "image/png", "filter").id

    latencies = []
    for data in images[:samples]:
        started = time.perf_counter()
        pid = send(data)
        latencies.append(finals.wait(pid) - started)
    started = time.perf_counter()
    with ThreadPoolExecutor(SENDERS) as pool:
        ids = list(pool.map(send, images))
    ended = max(finals.wait(pid, timeout=300) for pid in ids)
    states = [db.get_prediction(pid).state for pid in ids]
    return {"p50": quantile_ms(latencies, 0.5), "p95": quantile_ms(latencies, 0.95),
            "per_s": len(ids) / (ended - started),
            "done": states.count("done"), "rejected": states.count("rejected"),
            "failed": states.count("failed")}


def batch_sizes(log: str) -> list[int]:
    """Sizes of the batches a worker logged (`classifier batch of 12 in 9.8 ms`)."""
    return [int(line.split(" batch of ")[1].split()[0])
            for line in log.splitlines() if " batch of " in line]


def load_settings_store() -> str:
    """The model store the service is configured with."""
    return get_settings().model_store_url


def test_images(count: int) -> list[bytes]:
    """`count` Fashion-MNIST test images as PNG uploads."""
    import io

    from PIL import Image

    from training.data import load_dataset

    pixels = load_dataset().test.images[:, 0].numpy()
    out = []
    for i in range(count):
        buffer = io.BytesIO()
        Image.fromarray(pixels[i % len(pixels)]).save(buffer, "PNG")
        out.append(buffer.getvalue())
    return out


def main(argv: list[str] | None = None) -> int:
    """Run the three measurements and print the table; exit 1 when a target is missed."""
    parser = argparse.ArgumentParser(prog="python -m bench.pipeline", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=500,
                        help="predictions in flight for throughput (default: 500)")
    parser.add_argument("--samples", type=int, default=100,
                        help="one-at-a-time predictions for latency (default: 100)")
    parser.add_argument("--workers", type=int, default=1,
                        help="serving worker processes (default: 1)")
    parser.add_argument("--model-store", default=None,
                        help="model store to serve from (default: MODEL_STORE_URL)")
    args = parser.parse_args(argv)
    settings = get_settings()
    store_url = args.model_store or load_settings_store()
    print(f"{machine()}; {args.workers} serving worker(s)", flush=True)
    images = test_images(args.images)
    forward = forward_passes(store_url, images)

    with scratch() as run:
        folder, server, database_url = run.folder, run.redis, run.database_url
        settings = settings.replace(redis_url=server.url, broker_url=server.url,
                                    result_backend=server.url, database_url=database_url)
        env = {"REDIS_URL": server.url, "CELERY_BROKER_URL": server.url,
               "CELERY_RESULT_BACKEND": server.url, "DATABASE_URL": database_url,
               "MODEL_STORE_URL": store_url}
        workers = [Worker(f"bench{i}", env, folder, app="bench.noop")
                   for i in range(args.workers)]
        try:
            for worker in workers:
                worker.start()
            db = Database(database_url)
            finals = FinalEvents(server.url)
            # Each chain on its own app: once the no-op chain has waited on a result, its
            # app's result backend unsubscribes from Redis whenever any of its results
            # is collected, which the real chain (whose results nobody reads) must not pay.
            noop = noop_chain(create_celery(settings), args.images, args.samples)
            real = real_chain(create_celery(settings), db, finals, images, args.samples)
            finals.stop()
            sizes = [size for worker in workers for size in batch_sizes(worker.log())]
        finally:
            for worker in workers:
                worker.stop()

    bare = forward["filter"]["p50"] + forward["classifier"]["p50"]
    ratio = real["per_s"] / noop["per_s"]
    added = real["p50"] - bare
    print_table([
        ("filter forward, 1 image, p50", f"{forward['filter']['p50']:.2f} ms", "", None),
        ("classifier forward, 1 image, p50", f"{forward['classifier']['p50']:.2f} ms", "", None),
        ("filter forward, batch of 32", f"{forward['filter']['batched_per_s']:.0f} img/s", "",
         None),
        ("classifier forward, batch of 32",
         f"{forward['classifier']['batched_per_s']:.0f} img/s", "", None),
        ("no-op chain latency p50 / p95", f"{noop['p50']:.1f} / {noop['p95']:.1f} ms", "", None),
        ("no-op chain throughput", f"{noop['per_s']:.0f} chains/s", "", None),
        ("real chain latency p50 / p95", f"{real['p50']:.1f} / {real['p95']:.1f} ms", "", None),
        ("real chain throughput", f"{real['per_s']:.0f} img/s", "", None),
        ("real / no-op throughput", f"{ratio:.2f}", f">= {THROUGHPUT_RATIO}",
         ratio >= THROUGHPUT_RATIO),
        ("real p50 over bare forward passes", f"{added:.1f} ms", f"<= {ADDED_P50_MS:g} ms",
         added <= ADDED_P50_MS),
        ("outcomes done / rejected / failed",
         f"{real['done']} / {real['rejected']} / {real['failed']}", "", None),
        ("mean batch size (both models)",
         f"{statistics.mean(sizes):.1f}" if sizes else "-", "", None),
    ])
    return 0 if ratio >= THROUGHPUT_RATIO and added <= ADDED_P50_MS else 1


if __name__ == "__main__":
    sys.exit(main())
