"""The whole service through its HTTP API, against the classic synchronous design.

    python -m bench.service                        # models from MODEL_STORE_URL
    python -m bench.service --images 300 --clients 1 8 32

In one run, on this machine, with the same models: a private redis-server, a fresh SQLite
database, one serving worker and the web tier under its production command (gunicorn,
gevent); then the baseline (bench.baseline: a front Flask app forwarding each upload over
HTTP to a model Flask app), both under gunicorn.

1. The service end to end with 1, 8 and 32 concurrent clients: each uploads one image
   with POST /api/v1/predictions?wait=20, which answers once the prediction is final
   (long polls follow it if it is not final by then). Images per second; p50/p95/p99
   from upload to final state.
2. The same with batch submissions (16 images per request: one message per model step,
   one forward pass per model); each image counts the time until all 16 are final.
3. The baseline with the same clients: one image per request, answered at once.
4. The limits: batched forward passes of both models, and the no-op two-task chain.
And the resident memory of the web processes and of the worker, and the CPU time per image
that each side's processes (and the clients, in this process) used at the most clients.

Targets: at 32 clients at least 2x the baseline's throughput with a p99 no worse; at least
50% of the no-op chain's throughput; the batch path at least 50% of the raw batched
forward throughput of both models; each web process under 150 MB resident.
"""

import argparse
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from bench.pipeline import forward_passes, load_settings_store, noop_chain, quantile_ms, test_images
from bench.processes import Worker, free_port, wait_for
from bench.report import machine, print_table
from bench.scratch import scratch
from sieve.config import ROOT, get_settings
from workers.celery_app import create_celery

FINAL = {"done", "rejected", "failed", "cancelled"}
BATCH = 16
WAIT = 20  # seconds of one long poll (GET /api/v1/predictions/<id>?wait=)


def _rss_mb(pid: int) -> float:
    """Resident memory of a process, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _cpu_seconds(pid: int) -> float:
    """User and system CPU time a process has used so far, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _cpu_per_image(processes: dict[str, list[int]], load) -> tuple[dict, dict[str, float]]:
    """`load()`'s result, and the CPU milliseconds per image that each named group of
    processes (and this process, the clients) used while it ran."""
    pids = [pid for group in processes.values() for pid in group]
    before, client = {pid: _cpu_seconds(pid) for pid in pids}, time.process_time()
    result = load()
    used = {name: sum(_cpu_seconds(pid) - before[pid] for pid in group)
            for name, group in processes.items()}
    used["clients"] = time.process_time() - client
    return result, {name: 1000 * seconds / result["images"] for name, seconds in used.items()}


def _children(pid: int) -> list[int]:
    """Direct children of a process (gunicorn's workers)."""
    found = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            text = status.read_text()
        except OSError:
            continue
        if f"\nPPid:\t{pid}\n" in text:
            found.append(int(status.parent.name))
    return found


class Gunicorn:
    """An app under gunicorn on a free port."""

    def __init__(self, app: str, env: dict, folder: Path, args: list[str]):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        log = open(folder / f"gunicorn-{self.port}.log", "wb")  # noqa: SIM115 - lives with it
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", *args, "-b", f"127.0.0.1:{self.port}", app],
            cwd=ROOT, env=env, stdout=log, stderr=log)

    def wait(self, path: str) -> None:
        """Until `path` answers (any status)."""
        def answers():
            try:
                return requests.get(self.url + path, timeout=2) is not None
            except (requests.ConnectionError, requests.Timeout):  # still starting
                return False
        wait_for(answers, 120, f"{self.url}{path}", interval=0.2)

    def stop(self) -> None:
        """Stop gunicorn and its workers."""
        self.process.terminate()
        self.process.wait(timeout=30)


def _load(clients: int, jobs: list, one) -> dict:
    """Run `one(session, job) -> latencies` over jobs with `clients` threads."""
    local = threading.local()

    def run(job):
        if not hasattr(local, "session"):
            local.session = requests.Session()
        return one(local.session, job)

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        latencies = [x for batch in pool.map(run, jobs) for x in batch]
    elapsed = time.perf_counter() - started
    return {"images": len(latencies), "per_s": len(latencies) / elapsed,
            "p50": quantile_ms(latencies, 0.5),
            "p95": quantile_ms(latencies, 0.95), "p99": quantile_ms(latencies, 0.99)}


def _service_client(url: str, token: str):
    """Upload a job's images in one request that waits for their results
    (POST ?wait=20); if they are not final by then, long-poll until they are."""
    headers = {"Authorization": f"Bearer {token}"}

    def one(session: requests.Session, images: list[bytes]) -> list[float]:
        started = time.perf_counter()
        files = [("image", (f"{i}.png", data, "image/png")) for i, data in enumerate(images)]
        answer = session.post(f"{url}/api/v1/predictions", files=files, headers=headers,
                              params={"wait": WAIT}, timeout=WAIT + 30)
        answer.raise_for_status()
        ids = [item["id"] for item in answer.json()["items"]]
        deadline = time.monotonic() + 120
        while answer.status_code != 201 and time.monotonic() < deadline:
            # Long polls: each answers once all are final.
            if len(ids) == 1:
                states = [session.get(f"{url}/api/v1/predictions/{ids[0]}", headers=headers,
                                      params={"wait": WAIT}, timeout=WAIT + 30).json()["state"]]
            else:
                states = [item["state"] for item in session.get(
                    f"{url}/api/v1/predictions", headers=headers,
                    params={"id": ids, "wait": WAIT}, timeout=WAIT + 30).json()["items"]]
            if all(state in FINAL for state in states):
                break
        return [time.perf_counter() - started] * len(ids)

    return one


def _baseline_client(url: str):
    """Upload one image to the baseline's front and wait for its answer."""
    def one(session: requests.Session, images: list[bytes]) -> list[float]:
        started = time.perf_counter()
        answer = session.post(f"{url}/upload", files={"image": ("x.png", images[0])},
                              timeout=60)
        answer.raise_for_status()
        return [time.perf_counter() - started]

    return one


def service_env(redis_url: str, database_url: str, store_url: str, **extra: str) -> dict:
    """Environment of the service's processes in a benchmark: one private Redis for
    everything, no rate limit, no worker metrics port."""
    return {**os.environ, "REDIS_URL": redis_url, "CELERY_BROKER_URL": redis_url,
            "CELERY_RESULT_BACKEND": redis_url, "DATABASE_URL": database_url,
            "MODEL_STORE_URL": store_url, "SIEVE_RATE_LIMIT": "1000000/minute",
            "SIEVE_WORKER_METRICS_PORT": "0", **extra}


def make_api_token(database_url: str, redis_url: str) -> str:
    """A user and an API token made the way `flask tokens create` makes them."""
    from web import create_app
    from web.api.tokens import create_token
    from web.users import create_user

    app = create_app({"TESTING": True, "DATABASE_URL": database_url, "REDIS_URL": redis_url})
    with app.app_context():
        user = create_user("load@example.org", "correct horse battery staple 42")
        return create_token(user.id, "bench", ("predict",))[0]


def main(argv: list[str] | None = None) -> int:
    """Measure, print the table, exit 1 when a target is missed."""
    parser = argparse.ArgumentParser(prog="python -m bench.service", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=320,
                        help="images per measurement (default: 320)")
    parser.add_argument("--batch-images", type=int, default=1600,
                        help=f"images sent in batches of {BATCH} (default: 1600)")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32],
                        help="concurrent clients (default: 1 8 32)")
    parser.add_argument("--model-store", default=None,
                        help="model store to serve from (default: MODEL_STORE_URL)")
    args = parser.parse_args(argv)
    store_url = args.model_store or load_settings_store()
    print(machine(), flush=True)
    images = test_images(args.images)
    forward = forward_passes(store_url, images)
    raw = 1 / (1 / forward["filter"]["batched_per_s"] + 1 / forward["classifier"]["batched_per_s"])
    rows, results, cpu = [], {}, {}

    with scratch() as run:
        folder, redis_server, database_url = run.folder, run.redis, run.database_url
        env = service_env(redis_server.url, database_url, store_url,
                          SIEVE_MAX_QUEUE_DEPTH="1000000")
        worker = Worker("bench", env, folder, app="bench.noop")
        web = Gunicorn("web:create_app()", env, folder, ["-k", "gevent", "-w", "2"])
        model = Gunicorn("bench.baseline:create_model_app()", env, folder,
                         ["-w", "1", "--threads", "8"])
        front = Gunicorn("bench.baseline:create_front_app()",
                         {**env, "BASELINE_MODEL_URL": model.url}, folder,
                         ["-w", "2", "--threads", "16"])
        try:
            worker.start()
            for server, path in ((web, "/healthz"), (model, "/"), (front, "/")):
                server.wait(path)
            token = make_api_token(database_url, redis_server.url)
            settings = get_settings().replace(redis_url=redis_server.url,
                                              broker_url=redis_server.url,
                                              result_backend=redis_server.url)
            noop = noop_chain(create_celery(settings), args.images, 50)
            service, baseline = _service_client(web.url, token), _baseline_client(front.url)
            service_processes = {"web": _children(web.process.pid),
                                 "worker": [worker.process.pid],
                                 "Redis": [redis_server.process.pid]}
            baseline_processes = {"front": _children(front.process.pid),
                                  "model": _children(model.process.pid)}
            singles = [[data] for data in images]
            for clients in args.clients:
                results[("service", clients)], cpu[("service", clients)] = _cpu_per_image(
                    service_processes, lambda c=clients: _load(c, singles, service))
                results[("baseline", clients)], cpu[("baseline", clients)] = _cpu_per_image(
                    baseline_processes, lambda c=clients: _load(c, singles, baseline))
            many = [images[i % len(images)] for i in range(args.batch_images)]
            batches = [many[i:i + BATCH] for i in range(0, len(many), BATCH)]
            top = max(args.clients)
            results[("batch", top)] = _load(min(top, len(batches)), batches, service)
            memory = [_rss_mb(pid) for pid in _children(web.process.pid)]
            worker_memory = _rss_mb(worker.process.pid)
        finally:
            for process in (front, model, web):
                process.stop()
            worker.stop()

    for (kind, clients), r in sorted(results.items()):
        rows.append((f"{kind}, {clients} clients: images/s | p50/p95/p99 ms",
                     f"{r['per_s']:.0f} | {r['p50']:.0f}/{r['p95']:.0f}/{r['p99']:.0f}", "",
                     None))
    top = max(args.clients)
    real, base = results[("service", top)], results[("baseline", top)]
    batch = results[("batch", top)]
    checks = [
        (f"service / baseline throughput at {top} clients", real["per_s"] / base["per_s"],
         ">= 2", real["per_s"] >= 2 * base["per_s"]),
        (f"service p99 / baseline p99 at {top} clients", real["p99"] / base["p99"], "<= 1",
         real["p99"] <= base["p99"]),
        ("service / no-op chain throughput", real["per_s"] / noop["per_s"], ">= 0.5",
         real["per_s"] >= 0.5 * noop["per_s"]),
        ("batch path / raw batched forward passes", batch["per_s"] / raw, ">= 0.5",
         batch["per_s"] >= 0.5 * raw),
    ]
    rows += [(name, f"{value:.2f}", target, ok) for name, value, target, ok in checks]
    rows += [
        ("no-op chain throughput", f"{noop['per_s']:.0f} chains/s", "", None),
        ("raw batched forward, both models", f"{raw:.0f} img/s", "", None),
        *((f"{kind} CPU per image at {top} clients (ms)",
           ", ".join(f"{name} {ms:.2f}" for name, ms in cpu[(kind, top)].items())
           + f"; all {sum(cpu[(kind, top)].values()):.2f}", "", None)
          for kind in ("service", "baseline")),
        ("web process resident memory (max)", f"{max(memory):.0f} MB", "< 150 MB",
         max(memory) < 150),
        ("serving worker resident memory", f"{worker_memory:.0f} MB", "", None),
    ]
    print_table(rows)
    return 0 if all(r[3] is not False for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
