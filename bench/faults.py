"""Faults under load: a worker killed, Redis restarted, S3 and the database cut off.

    python -m bench.faults                         # every scenario, 2000 uploads each
    python -m bench.faults --only db-outage --uploads 1000

Each scenario starts its own private redis-server, database, workers and web tier (gunicorn,
gevent) on loopback, then sends uploads from 32 clients through POST /api/v1/predictions
(bench.uploads: a 503 is waited out for its Retry-After, then sent again) and injects one
fault in the middle:

- worker-kill: two serving workers; one is SIGKILLed while it runs batches, and a
  replacement starts. Its unacknowledged messages return to the queue after the
  visibility timeout (SIEVE_VISIBILITY_TIMEOUT, 10 s here) and another worker runs them.
- redis-restart: the redis-server (nothing on disk) is stopped and started again 2 s
  later (--redis-down); its queued messages are gone. Workers re-send unfinished
  predictions enqueued on the old Redis run (workers/recovery.py, every
  SIEVE_RECOVERY_INTERVAL, 2 s here).
- s3-outage: the model store is s3:// on moto's S3 server behind a TCP proxy
  (bench.proxy); a training worker runs a small training run, and the proxy is cut when the
  run uploads its second artifact, until the run has ended. Then a second run publishes,
  its version is promoted and served. The serving worker loads from the same S3.
- db-outage: the service on a throwaway PostgreSQL database behind a TCP proxy, cut for a
  few seconds (open connections reset, new ones refused), then restored.

Checks, after each: every prediction a client got a 202 for reaches a final state with
exactly one final event, and none of them failed (the models are fine: the fault did it);
the database holds no prediction no client was told about; no
answer other than 202 and 503 came back (503s that are not back-pressure are the fault's
own answers, listed with their detail). For s3-outage also: the run ends (not stuck
`running`) with a reason, nothing half-published is visible, a later run publishes and is
served once promoted. Exit 1 when a check fails.
"""

import argparse
import re
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy

from bench.pipeline import load_settings_store, test_images
from bench.processes import S3Server, Worker, wait_for
from bench.proxy import Proxy
from bench.report import machine, print_table
from bench.scratch import Scratch, scratch
from bench.service import Gunicorn, make_api_token, service_env
from bench.uploads import BACKPRESSURE, Tally, loss_rows, outcome, settle, upload
from sieve.config import get_settings
from sieve.database import Database
from sieve.migrate import upgrade
from sieve.models import FINAL_STATES

# Faster than the defaults (120 s, 15 s), so that a scenario takes a minute or two.
FAULT_ENV = {"SIEVE_VISIBILITY_TIMEOUT": "10", "SIEVE_RECOVERY_INTERVAL": "2",
             "SIEVE_BACKPRESSURE_RETRY_AFTER": "1"}
S3_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
          "AWS_DEFAULT_REGION": "us-east-1"}
POSTGRES_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
TRAINING = {"model": "classifier", "subset": 1000, "epochs": 1, "width": 4,
            "optimizer": "adam"}
TASK_LINE = re.compile(r"Task (sieve\.\w+)\[([0-9a-f-]+)\] (received|succeeded|raised|retry)")


@dataclass
class Service:
    """The web tier and workers of one scenario, and the token its clients use."""

    env: dict
    folder: Path
    web: Gunicorn
    token: str
    workers: list[Worker] = field(default_factory=list)

    def worker(self, name: str, queues: str = "filter,classify", **env: str) -> Worker:
        """Start one more worker with the scenario's environment."""
        worker = Worker(name, {**self.env, **env}, self.folder, queues)
        self.workers.append(worker)
        return worker.start(timeout=180)


@contextmanager
def service(run: Scratch, database_url: str, store_url: str, args, **extra: str
            ) -> Iterator[Service]:
    """The web tier on `database_url`; workers are started by the scenario."""
    env = service_env(run.redis.url, database_url, store_url,
                      SIEVE_MAX_QUEUE_DEPTH=str(args.max_queue_depth), **FAULT_ENV, **extra)
    web = Gunicorn("web:create_app()", env, run.folder, ["-k", "gevent", "-w", "2"])
    current = None
    try:
        web.wait("/healthz")
        current = Service(env, run.folder, web, make_api_token(database_url, run.redis.url))
        yield current
    finally:
        web.stop()
        for worker in current.workers if current else ():
            worker.stop()


class Load:
    """The upload clients, running in a background thread while the fault happens."""

    def __init__(self, svc: Service, images: list[bytes], args):
        self.tally = Tally()
        self.started = time.monotonic()
        self.deadline = self.started + args.seconds
        self.thread = threading.Thread(
            target=upload, daemon=True, name="load",
            args=(svc.web.url, svc.token, images, args.uploads, args.clients, self.deadline,
                  self.tally))
        self.thread.start()
        self.uploaded: float | None = None

    def reach(self, acknowledged: int) -> None:
        """Wait until the clients were told about `acknowledged` predictions."""
        wait_for(lambda: self.tally.acknowledged >= acknowledged or not self.thread.is_alive(),
                 self.deadline - time.monotonic(), f"{acknowledged} acknowledged uploads",
                 interval=0.05)

    def finish(self) -> float:
        """Wait for the clients to end; seconds they took."""
        self.thread.join(max(1.0, self.deadline - time.monotonic()))
        self.uploaded = time.monotonic() - self.started
        return self.uploaded

    def fault_answers(self, before: Counter | None = None) -> Counter:
        """Non-202 answers other than back-pressure (since `before`, a copy of reasons)."""
        with self.tally.lock:
            now = Counter(self.tally.reasons)
        return Counter({key: n for key, n in (now - (before or Counter())).items()
                        if key[1] != BACKPRESSURE})

    def snapshot(self) -> Counter:
        """The answers so far, to compare with later."""
        with self.tally.lock:
            return Counter(self.tally.reasons)


def _checks(load: Load, db: Database, args, fault_at: float) -> tuple[list[tuple], dict]:
    """Wait for the acknowledged predictions, then the rows every scenario reports."""
    load.finish()
    tally = load.tally
    pending = settle(db, tally.told, args.settle)
    final_after = time.monotonic() - fault_at
    result = outcome(db, tally.told, pending)
    told = len(tally.told)
    faults = load.fault_answers()
    # An upload Redis would not take is recorded as failed, and its client told 503.
    refused = sum(n for (state, why), n in result.strays.items()
                  if state == "failed" and why.startswith("the task queue is unreachable"))
    rows = [
        ("uploads acknowledged (202)", f"{told}", f"{args.uploads}", told == args.uploads),
        ("answers caused by the fault", f"{sum(faults.values())}", "", None),
        *((f"  {status}: {detail[:60]}", f"{n}", "", None)
          for (status, detail), n in faults.most_common()),
        ("requests without an answer", f"{sum(tally.no_answer.values())} "
                                       f"{dict(tally.no_answer) or ''}", "", None),
        *loss_rows(tally, result, refused),
    ]
    failed = sum(result.reasons.values())  # the models are fine: the fault did it
    rows.append(("acknowledged, then failed", f"{failed}", "0", failed == 0))
    rows += [(f"  failed: {why[:60]}", f"{n}", "", None)
             for why, n in result.reasons.most_common()]
    rows += [(f"  never acknowledged, {state}: {why[:60]}", f"{n}", "", None)
             for (state, why), n in result.strays.most_common()]
    rows.append(("uploads took / all final after the fault",
                 f"{load.uploaded:.0f} / {final_after:.0f} s", "", None))
    return rows, {"result": result}


def _task_log(worker: Worker) -> tuple[set[str], set[str]]:
    """Task ids a worker received, and those it finished (succeeded, failed or retried)."""
    received, finished = set(), set()
    for _name, task_id, what in TASK_LINE.findall(worker.log()):
        (received if what == "received" else finished).add(task_id)
    return received, finished


def worker_kill(args, images, store_url) -> list[tuple]:
    """SIGKILL one of two serving workers mid-batch; start a replacement."""
    with scratch("sieve-faults-") as run, \
            service(run, run.database_url, store_url, args) as svc:
        victim, survivor = svc.worker("victim"), svc.worker("survivor")
        db = Database(run.database_url)
        load = Load(svc, images, args)
        load.reach(args.uploads // 3)
        seen = victim.log().count(" batch of ")
        wait_for(lambda: victim.log().count(" batch of ") > seen + 3, 30,
                 "the victim to run batches")
        victim.kill()
        killed_at = time.monotonic()
        received, finished = _task_log(victim)
        in_flight = received - finished
        replacement = svc.worker("replacement")
        started = time.monotonic() - killed_at
        rows, _ = _checks(load, db, args, killed_at)
        again, lost = set(), 0
        for worker in (survivor, replacement):
            again |= _task_log(worker)[0] & in_flight
            lost += worker.log().count("its message was lost")
        db.dispose()
    return [*rows,
            ("tasks the victim held unfinished when killed", f"{len(in_flight)}", "", None),
            ("of those, delivered again to another worker", f"{len(again)}",
             f"{len(in_flight)}", again == in_flight),
            ("lost messages sent again by recovery", f"{lost}", "", None),
            ("replacement worker ready after", f"{started:.0f} s", "", None)]


def redis_restart(args, images, store_url) -> list[tuple]:
    """Restart Redis (its queues are lost) in the middle of the load."""
    with scratch("sieve-faults-") as run, \
            service(run, run.database_url, store_url, args) as svc:
        worker = svc.worker("serve")
        db = Database(run.database_url)
        load = Load(svc, images, args)
        load.reach(args.uploads // 3)
        restart_at = time.monotonic()
        run.redis.stop()  # RedisServer.restart(), with a pause to stay down for
        time.sleep(args.redis_down)
        run.redis.start()
        down = time.monotonic() - restart_at
        rows, _ = _checks(load, db, args, restart_at)
        resent = worker.log().count("enqueued again: its message was on a Redis run")
        reconnected = "Connection to broker lost" in worker.log()
        db.dispose()
    return [*rows,
            ("Redis down during restart", f"{down:.1f} s", "", None),
            ("worker noticed the lost connection", f"{reconnected}", "", None),
            ("predictions re-sent by recovery", f"{resent}", "", None)]


def _copy_models(source: str, target) -> None:
    """Publish the served filter and classifier of `source` in `target`, as v1."""
    import json

    from sieve.store import CARD, MANIFEST, open_store

    for name in ("filter", "classifier"):
        folder = open_store(source).open(name)
        files = {p.name: p for p in folder.iterdir() if p.name not in (MANIFEST, CARD)}
        target.publish(name, files, json.loads((folder / CARD).read_text()))


class CutOnUpload:
    """A proxy watch: cut when the `nth` artifact upload of a model version begins."""

    def __init__(self, bucket: str, model: str, nth: int = 2):
        self.request = re.compile(rb"PUT /" + re.escape(bucket.encode()) +
                                  rb"/[^ ]*" + model.encode() + rb"/(v\d+)/([^ ?/]+)")
        self.nth, self.seen = nth, []
        self.proxy: Proxy | None = None
        self.cut = threading.Event()

    def __call__(self, data: bytes) -> None:
        match = self.request.match(data)
        if match and match[2] != b".claim" and not self.cut.is_set():
            self.seen.append(f"{match[1].decode()}/{match[2].decode()}")
            if len(self.seen) >= self.nth:
                self.proxy.cut()
                self.cut.set()


def s3_outage(args, images, store_url) -> list[tuple]:
    """Cut S3 off while a training run publishes; then a new run publishes and serves."""
    import boto3

    from sieve import registry
    from workers.celery_app import create_celery
    from workers.runs import get_run, submit_run

    with scratch("sieve-faults-") as run:
        moto = S3Server(run.folder)
        moto.start()
        bucket = f"sieve-faults-{uuid.uuid4().hex[:8]}"
        watch = CutOnUpload(bucket, "classifier")
        proxy = Proxy(moto.port, watch=watch).start()
        watch.proxy = proxy
        s3_env = {**S3_ENV, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{proxy.port}",
                  "SIEVE_MODEL_CACHE_DIR": str(run.folder / "model-cache")}
        url = f"s3://{bucket}/models"
        try:
            boto3.client("s3", endpoint_url=moto.url, **_aws()).create_bucket(Bucket=bucket)
            direct = _s3_store(url, moto.url, run.folder)  # the checks bypass the proxy
            _copy_models(store_url, direct)
            registry.promote("classifier", "v1", store=direct)
            with service(run, run.database_url, url, args, **s3_env,
                         SIEVE_MODEL_RELOAD_INTERVAL="2", SIEVE_TRAINING_HEARTBEAT="0.5",
                         SIEVE_TRAINING_STALE_AFTER="30") as svc:
                svc.worker("serve")
                svc.worker("trainer", queues="training")
                db = Database(run.database_url)
                settings = get_settings().replace(
                    redis_url=run.redis.url, broker_url=run.redis.url,
                    result_backend=run.redis.url, database_url=run.database_url)
                celery = create_celery(settings)
                first = submit_run(celery, db, TRAINING)
                load = Load(svc, images, args)
                cut = watch.cut.wait(args.settle)
                cut_at = time.monotonic()
                try:
                    ended = wait_for(lambda: (r := get_run(db, first.id, 30)).final and r,
                                     args.settle, "the training run to end")
                except AssertionError:
                    ended = get_run(db, first.id, 30)
                ended_after = time.monotonic() - cut_at
                during = direct.versions("classifier")
                leftovers = _unpublished(direct, "classifier")
                proxy.restore()
                rows, _ = _checks(load, db, args, cut_at)
                second = submit_run(celery, db, TRAINING)
                try:
                    done = wait_for(lambda: (r := get_run(db, second.id, 30)).final and r,
                                    args.settle, "the second training run to end")
                except AssertionError:
                    done = get_run(db, second.id, 30)
                served = None
                if done.version:
                    registry.promote("classifier", done.version, store=direct)
                    served = _served_after_promotion(svc, db, done.version, images[0])
                db.dispose()
        finally:
            proxy.stop()
            moto.stop()
    return [
        *rows,
        ("S3 cut during the upload of", f"{watch.seen[-1] if cut else 'never cut'}", "",
         cut),
        ("first run", f"{ended.state} after {ended_after:.0f} s", "final",
         ended.state in FINAL_STATES),
        ("first run's reason", f"{ended.reason}", "", bool(ended.reason)
         if ended.state != "done" else None),
        ("versions visible while cut", f"{during}", "['v1']", during == ["v1"]),
        ("claimed, never published (no manifest)", f"{leftovers}", "", None),
        ("second run, after S3 is back", f"{done.state} {done.version or done.reason}",
         "done", done.state == "done"),
        ("promoted version served", f"{served}", f"{done.version}",
         served is not None and served == done.version),
    ]


def _aws() -> dict:
    """boto3 client arguments for moto."""
    return {"aws_access_key_id": S3_ENV["AWS_ACCESS_KEY_ID"],
            "aws_secret_access_key": S3_ENV["AWS_SECRET_ACCESS_KEY"],
            "region_name": S3_ENV["AWS_DEFAULT_REGION"]}


def _s3_store(url: str, endpoint: str, folder: Path):
    """An S3Store talking to moto directly, for setting up and checking."""
    import boto3
    from botocore.config import Config

    from sieve.store.s3 import S3Store

    client = boto3.client("s3", endpoint_url=endpoint, config=Config(
        s3={"addressing_style": "path"}), **_aws())
    bucket, _, prefix = url.removeprefix("s3://").partition("/")
    return S3Store(bucket, prefix, folder / "check-cache", endpoint, client=client)


def _unpublished(store, name: str) -> dict[str, list[str]]:
    """Version folders without a manifest: what a failed publish left behind."""
    found: dict[str, list[str]] = {}
    for key in store._keys(store._key(name, "")):
        version, _, filename = key.partition("/")
        if re.fullmatch(r"v\d+", version):
            found.setdefault(version, []).append(filename)
    return {v: sorted(f) for v, f in found.items() if "MANIFEST.json" not in f}


def _served_after_promotion(svc: Service, db: Database, version: str, image: bytes
                            ) -> str | None:
    """The classifier version of a new prediction, once the promoted one serves (or not)."""
    import requests

    headers = {"Authorization": f"Bearer {svc.token}"}
    last = None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        answer = requests.post(f"{svc.web.url}/api/v1/predictions", headers=headers,
                               files={"image": ("x.png", image, "image/png")}, timeout=30)
        if answer.status_code == 202:
            pid = answer.json()["items"][0]["id"]
            settle(db, [pid], 60)
            last = (db.get_prediction(pid).model_versions or {}).get("classifier")
            if last == version:
                return last
        time.sleep(1)
    return last


def db_outage(args, images, store_url) -> list[tuple]:
    """Cut the service off PostgreSQL for a few seconds in the middle of the load."""
    name = f"sieve_faults_{uuid.uuid4().hex[:10]}"
    admin = sqlalchemy.create_engine(POSTGRES_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
    direct = sqlalchemy.make_url(POSTGRES_ADMIN).set(database=name)
    proxy = Proxy(direct.port or 5432).start()
    proxied = direct.set(port=proxy.port).render_as_string(False)
    try:
        upgrade(direct.render_as_string(False))
        with scratch("sieve-faults-") as run, service(run, proxied, store_url, args) as svc:
            svc.worker("serve")
            db = Database(direct.render_as_string(False))  # the checks bypass the proxy
            load = Load(svc, images, args)
            load.reach(args.uploads // 3)
            before = load.snapshot()
            cut_at = time.monotonic()
            reset = proxy.cut()
            time.sleep(args.outage)
            proxy.restore()
            during = load.fault_answers(before)
            rows, _ = _checks(load, db, args, cut_at)
            worker_log = svc.workers[0].log()
            db.dispose()
    finally:
        proxy.stop()
        with admin.connect() as connection:
            connection.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
    retried = len(re.findall(r"Task sieve\.\w+\[[0-9a-f-]+\] retry", worker_log))
    statuses = Counter()
    for (status, _detail), n in during.items():
        statuses[status] += n
    return [*rows,
            ("database cut off for", f"{args.outage:g} s ({reset} connections reset)", "",
             None),
            ("answers while cut off, by status", f"{dict(statuses)}", "503 only",
             set(statuses) <= {503}),
            ("task retries in the worker", f"{retried}", "", None)]


SCENARIOS = {"worker-kill": worker_kill, "redis-restart": redis_restart,
             "s3-outage": s3_outage, "db-outage": db_outage}


def main(argv: list[str] | None = None) -> int:
    """Run the scenarios, print a table for each; exit 1 when a check fails."""
    parser = argparse.ArgumentParser(prog="python -m bench.faults", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=sorted(SCENARIOS), action="append",
                        help="run this scenario (repeatable; default: all)")
    parser.add_argument("--uploads", type=int, default=2000,
                        help="uploads per scenario (default: 2000)")
    parser.add_argument("--clients", type=int, default=32, help="default: 32")
    parser.add_argument("--seconds", type=float, default=300,
                        help="time bound for the uploads of one scenario (default: 300)")
    parser.add_argument("--settle", type=float, default=120,
                        help="time bound for everything to finish after the uploads, and "
                             "for a training run to end (default: 120)")
    parser.add_argument("--outage", type=float, default=5,
                        help="seconds the database is cut off (default: 5)")
    parser.add_argument("--redis-down", type=float, default=2,
                        help="seconds Redis stays down when it restarts (default: 2)")
    parser.add_argument("--max-queue-depth", type=int, default=1000,
                        help="SIEVE_MAX_QUEUE_DEPTH of the web tier (default: 1000)")
    parser.add_argument("--model-store", default=None,
                        help="models to serve (default: MODEL_STORE_URL)")
    args = parser.parse_args(argv)
    store_url = args.model_store or load_settings_store()
    print(machine(), flush=True)
    images = test_images(200)
    failed = []
    for name in args.only or SCENARIOS:
        print(f"\n## {name}", flush=True)
        started = time.monotonic()
        rows = SCENARIOS[name](args, images, store_url)
        rows.append(("scenario took", f"{time.monotonic() - started:.0f} s", "", None))
        print_table(rows)
        if any(r[3] is False for r in rows):
            failed.append(name)
    if failed:
        print(f"\nfailed: {', '.join(failed)}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
