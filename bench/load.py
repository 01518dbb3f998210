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
import time

from bench.pipeline import load_settings_store, test_images
from bench.processes import Worker
from bench.report import machine, print_table
from bench.scratch import scratch
from bench.service import Gunicorn, make_api_token, service_env
from bench.uploads import loss_rows, outcome, settle, upload
from sieve.database import Database


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
            token = make_api_token(database_url, redis_server.url)
            started = time.monotonic()
            deadline = started + args.seconds
            tally = upload(web.url, token, images, args.uploads, args.clients, deadline)
            uploaded = time.monotonic() - started
            pending = settle(db, tally.told, max(10.0, deadline + 60 - time.monotonic()))
            finished = time.monotonic() - started
            result = outcome(db, tally.told, pending)
        finally:
            web.stop()
            worker.stop()
            db.dispose()

    told = len(tally.told)
    rows = [("uploads acknowledged (202)", f"{told}", f"{args.uploads}",
             told == args.uploads),
            *loss_rows(tally, result),
            ("uploading took / everything final after",
             f"{uploaded:.0f} / {finished:.0f} s", "", None),
            ("throughput", f"{told / finished:.0f} images/s", "", None)]
    print_table(rows)
    return 0 if all(r[3] is not False for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
