"""Load test: many uploads through the HTTP API, then a check that nothing was lost.

    python -m bench.load                          # 10,000 uploads, 32 clients
    python -m bench.load --uploads 2000 --max-queue-depth 200

On loopback only: a private redis-server, a fresh SQLite database, one serving worker and
the web tier under gunicorn (gevent). 32 clients upload one image each per request as
fast as they are answered; a 503 (back-pressure: the queue is deeper than
SIEVE_MAX_QUEUE_DEPTH) is the one answer allowed besides 202, and the client waits its
Retry-After before the next upload. Bounded in count and in time (--seconds).

Then, from the database: every prediction a client was told about (202) reaches a final
state within the time bound, with exactly one final event; the database holds no
prediction no client was told about; and no answer other than 202 and 503 came back.
"""

import argparse
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import requests

from bench.pipeline import load_settings_store, test_images
from bench.report import machine, print_table
from bench.scratch import scratch
from bench.service import Gunicorn, _token, service_env
from sieve.database import Database
from sieve.models import FINAL_STATES
from sieve.processes import Worker, wait_for


def _client(url: str, token: str, images: list[bytes], quota: int, deadline: float,
            told: list, answers: Counter, lock: threading.Lock) -> None:
    """Upload `quota` images, honouring back-pressure, until done or past the deadline."""
    session = requests.Session()
    headers = {"Authorization": f"Bearer {token}"}
    sent = 0
    while sent < quota and time.monotonic() < deadline:
        data = images[sent % len(images)]
        answer = session.post(f"{url}/api/v1/predictions", headers=headers, timeout=60,
                              files={"image": ("load.png", data, "image/png")})
        with lock:
            answers[answer.status_code] += 1
        if answer.status_code == 202:
            with lock:
                told.extend(item["id"] for item in answer.json()["items"])
            sent += 1
        elif answer.status_code == 503:
            time.sleep(float(answer.headers.get("Retry-After", "1")))


def main(argv: list[str] | None = None) -> int:
    """Run the load, check the database, print the table; exit 1 on any loss."""
    parser = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--uploads", type=int, default=10_000, help="default: 10000")
    parser.add_argument("--clients", type=int, default=32, help="default: 32")
    parser.add_argument("--seconds", type=float, default=900,
                        help="time bound for uploading and for finishing (default: 900)")
    parser.add_argument("--max-queue-depth", type=int, default=1000,
                        help="SIEVE_MAX_QUEUE_DEPTH of the web tier (default: 1000)")
    parser.add_argument("--model-store", default=None)
    args = parser.parse_args(argv)
    store_url = args.model_store or load_settings_store()
    print(machine(), flush=True)
    images = test_images(200)
    told: list[str] = []
    answers: Counter = Counter()
    lock = threading.Lock()

    with scratch("sieve-load-") as run:
        folder, redis_server, database_url = run.folder, run.redis, run.database_url
        env = service_env(redis_server.url, database_url, store_url,
                          SIEVE_MAX_QUEUE_DEPTH=str(args.max_queue_depth),
                          SIEVE_BACKPRESSURE_RETRY_AFTER="1")
        worker = Worker("load", env, folder)
        web = Gunicorn("web:create_app()", env, folder, ["-k", "gevent", "-w", "2"])
        db = Database(database_url)
        try:
            worker.start()
            web.wait("/healthz")
            token = _token(database_url, redis_server.url)
            started = time.monotonic()
            deadline = started + args.seconds
            quotas = [args.uploads // args.clients + (i < args.uploads % args.clients)
                      for i in range(args.clients)]
            with ThreadPoolExecutor(args.clients) as pool:
                for quota in quotas:
                    pool.submit(_client, web.url, token, images, quota, deadline, told,
                                answers, lock)
            uploaded = time.monotonic() - started
            pending = set(told)

            def all_final() -> bool:
                for pid in list(pending)[:500]:
                    if db.get_prediction(pid).state in FINAL_STATES:
                        pending.discard(pid)
                return not pending

            try:
                wait_for(all_final, max(10.0, deadline + 60 - time.monotonic()),
                         "every acknowledged prediction to finish", interval=0.5)
            except AssertionError:
                pass
            finished = time.monotonic() - started
            states = Counter(db.get_prediction(pid).state for pid in told)
            finals = Counter(sum(e["state"] in FINAL_STATES for e in db.events(pid))
                             for pid in told)
            stored = db.count_predictions()
        finally:
            web.stop()
            worker.stop()
            db.dispose()

    unexpected = {code: n for code, n in answers.items() if code not in (202, 503)}
    rows = [
        ("uploads acknowledged (202)", f"{len(told)}", f"{args.uploads}",
         len(told) == args.uploads),
        ("back-pressure answers (503)", f"{answers.get(503, 0)}", "", None),
        ("other answers", f"{sum(unexpected.values())} {unexpected or ''}", "0",
         not unexpected),
        ("acknowledged and final", f"{len(told) - len(pending)}", f"{len(told)}", not pending),
        ("final events per prediction", f"{dict(finals)}", "{1: all}",
         set(finals) == {1}),
        ("states", f"{dict(states)}", "", None),
        ("uploading took / everything final after", f"{uploaded:.0f} / {finished:.0f} s", "",
         None),
        ("throughput", f"{len(told) / finished:.0f} images/s", "", None),
    ]
    rows.append(("predictions in the database", f"{stored}", f"{len(told)}",
                 stored == len(told)))
    print_table(rows)
    return 0 if all(r[3] is not False for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
