"""Training runs: submit, follow and cancel training jobs on the `training` queue.

These plain functions are what the web tier and the API call (nothing here imports
torch); the command line below uses them too. A run is a row in `training_runs`: the
training worker moves it to `running`, writes its progress, log and heartbeat there, and
publishes each change on Redis (channel `sieve:training-runs:<id>`).

Examples:
  python -m workers.runs submit --model classifier --epochs 3 --optimizer adam --wait
  python -m workers.runs submit --model filter --promote        # promote if it is better
  python -m workers.runs list
  python -m workers.runs status RUN_ID
  python -m workers.runs logs RUN_ID --follow
  python -m workers.runs cancel RUN_ID
"""

import argparse
import json
import logging
import math
import re
import sys
import time

import kombu.exceptions
import redis
from celery import Celery

from sieve import consumers, redisconn
from sieve.cli import HelpFormatter
from sieve.config import ARCHS, MODELS, OPTIMIZERS, get_settings
from sieve.database import Database
from sieve.models import FAILED, QUEUED, TrainingRun
from sieve.queues import TRAINING_QUEUE
from workers.celery_app import TRAIN_TASK
from workers.client import QueueUnavailable, redis_run_id

log = logging.getLogger(__name__)

# Pretrained weights a run may name: torchvision's (DEFAULT, IMAGENET1K_V1, ...) or a
# published model's (store:<model>/<version or alias>); never a path on the worker.
WEIGHTS = re.compile(r"^(?:[A-Z][A-Z0-9_]{0,39}"
                     r"|store:[a-z0-9][a-z0-9_-]{0,63}/[a-z0-9][a-z0-9_-]{0,63})$")
# Parameters of a run: name -> (type, check, the training CLI option). Anything else is
# refused, so that a typo in an API request is an error and not a silently ignored option.
PARAMS = {
    "model": (str, lambda v: v in MODELS, "--model"),
    "data_dir": (str, bool, "--data-dir"),
    "data_url": (str, bool, "--data-url"),
    "epochs": (int, lambda v: 1 <= v <= 1000, "--epochs"),
    "optimizer": (str, lambda v: v in OPTIMIZERS, "--optimizer"),
    "lr": (float, lambda v: 0 < v <= 10, "--lr"),
    "seed": (int, lambda v: 0 <= v < 2**32, "--seed"),
    "subset": (int, lambda v: v >= 1, "--subset"),
    "time_limit": (float, lambda v: v > 0, "--time-limit"),
    "width": (int, lambda v: 1 <= v <= 256, "--width"),
    "batch_size": (int, lambda v: 1 <= v <= 4096, "--batch-size"),
    "arch": (str, lambda v: v in ARCHS, "--arch"),
    "weights": (str, lambda v: bool(WEIGHTS.match(v)), "--weights"),
    "freeze_backbone": (bool, lambda v: True, "--freeze-backbone"),
    "image_size": (int, lambda v: 8 <= v <= 1024, "--image-size"),
    "promote": (bool, lambda v: True, None),
}
HELP = {
    "model": f"which model: {', '.join(MODELS)} (default: classifier)",
    "data_dir": "image-folder or Fashion-MNIST folder on the training worker "
                "(default: Fashion-MNIST)",
    "data_url": "Fashion-MNIST mirror or image-folder archive (default: DATA_URL)",
    "epochs": "passes over the data (default: the training CLI's per-model default)",
    "optimizer": f"{', '.join(OPTIMIZERS)} (default: sgd)",
    "lr": "peak learning rate (default: the training CLI's per-model default)",
    "seed": "random seed (default: 0)",
    "subset": "train on the first N images only (default: all)",
    "time_limit": "seconds of training (default: no limit)",
    "width": "channels of the first layer (default: 16)",
    "batch_size": "images per step (default: the training CLI's per-model default)",
    "arch": f"the network: {', '.join(ARCHS)} (default: cnn)",
    "weights": "pretrained backbone weights: DEFAULT (or another torchvision weights name), "
               "or store:<model>/<version> for a published model's (default: none)",
    "freeze_backbone": "train the backbone's head only (default: off)",
    "image_size": "side in pixels for image-folder data sets (default: 64 with cnn, 224 "
                  "with a torchvision backbone)",
    "promote": "promote the new version to production if it beats the current one on "
               "the same test set (default: off)",
}

KINDS = {int: "a whole number", float: "a number", bool: "true or false", str: "text"}


class InvalidParameters(ValueError):
    """Parameters of a run that cannot be used; the message says which and why."""


def channel(run_id: str) -> str:
    """The pub/sub channel that carries one run's progress and state changes."""
    return f"sieve:training-runs:{run_id}"


def cancel_key(run_id: str) -> str:
    """Redis key the training worker checks after every step."""
    return f"sieve:training-runs:{run_id}:cancel"


def validate(params: dict) -> dict:
    """Checked and normalised parameters (`model` defaults to classifier)."""
    unknown = sorted(set(params) - set(PARAMS))
    if unknown:
        raise InvalidParameters(f"unknown parameters {unknown}: use {sorted(PARAMS)}")
    clean = {"model": "classifier"}
    for name, value in params.items():
        if value is None:
            continue
        kind, check, _ = PARAMS[name]
        try:
            if kind is bool and not isinstance(value, bool):
                raise TypeError
            typed = kind(value)
            if kind is int and typed != float(value):
                raise ValueError
            if kind is float and not math.isfinite(typed):
                raise ValueError
        except (TypeError, ValueError, OverflowError):  # 1e999 is inf; int(inf) overflows
            raise InvalidParameters(f"{name}={value!r} is not {KINDS[kind]}") from None
        if not check(typed):
            raise InvalidParameters(f"{name}={value!r} is out of range: {HELP[name]}")
        clean[name] = typed
    return clean


def train_argv(params: dict) -> list[str]:
    """The training command line that a run's parameters stand for."""
    argv = ["--train", "--download-data"]
    for name, value in params.items():
        kind, _, option = PARAMS[name]
        if option is None or (kind is bool and not value):
            continue
        argv += [option] if kind is bool else [option, str(value)]
    return argv


def publish(redis_url: str, run_id: str, message: dict) -> bool:
    """Send a message on the run's channel; False when Redis is unreachable (pages then
    fall back to polling the record)."""
    try:
        redisconn.connect(redis_url).publish(channel(run_id), json.dumps({"id": run_id, **message}))
    except redis.RedisError as exc:
        log.warning("training run %s: event not published: %s", run_id, exc)
        return False
    return True


def announce(redis_url: str, run: TrainingRun) -> None:
    """Publish a run's state change (the whole record but the log)."""
    publish(redis_url, run.id, {"type": "state", **run.to_dict()})


def submit_run(celery: Celery, db: Database, params: dict,
               user_id: int | None = None) -> TrainingRun:
    """Record a run (state `queued`) and send it to the training queue.

    `params`: model (classifier|filter), data_dir or data_url, epochs, optimizer, lr, seed,
    subset, time_limit, width, batch_size, arch, weights, freeze_backbone, image_size,
    promote. Raises InvalidParameters for bad ones,
    and QueueUnavailable (after marking the run failed) when the broker cannot take it.
    """
    clean = validate(params)
    epoch = redis_run_id(celery)
    run = db.create_training_run(clean["model"], clean, user_id, redis_run_id=epoch)
    try:
        celery.send_task(TRAIN_TASK, args=(run.id,))
    except (redis.RedisError, kombu.exceptions.OperationalError) as exc:
        db.finish_training_run(run.id, FAILED, (QUEUED,),
                               reason=f"the task queue is unreachable: {exc}")
        raise QueueUnavailable(f"the task queue is unreachable: {exc}") from exc
    announce(celery.conf.sieve.redis_url, run)
    return run


def no_worker_warning(celery: Celery) -> str | None:
    """Why submitted runs would wait, when no worker listens on the training queue (read
    from Redis, at most every few seconds); None when one does or Redis cannot tell."""
    url = celery.conf.sieve.redis_url
    count = consumers.cached_listening(redisconn.connect(url), url, TRAINING_QUEUE)
    return consumers.NO_TRAINING_WORKER if count == 0 else None


def resend_lost_runs(celery: Celery, db: Database, idle_for: float = 5.0
                     ) -> list[TrainingRun]:
    """Send again the queued runs whose message was on a Redis run that has ended (a Redis
    without persistence forgets its queues when it restarts). A run delivered twice
    starts once: only a queued run can start."""
    epoch = redis_run_id(celery, fresh=True)  # read before sending, as for predictions
    lost = db.queued_runs_outside(epoch, idle_for)
    for run in lost:
        celery.send_task(TRAIN_TASK, args=(run.id,))
        db.mark_training_run_sent(run.id, epoch)
        log.warning("training run %s sent again: its message was on a Redis run that has "
                    "ended", run.id)
    return lost


def fail_stale_runs(db: Database, stale_after: float, redis_url: str | None = None
                    ) -> list[TrainingRun]:
    """Mark failed the running runs without a heartbeat for `stale_after` seconds."""
    failed = db.fail_stale_training_runs(stale_after)
    for run in failed:
        log.warning("training run %s failed: %s", run.id, run.reason)
        if redis_url:
            announce(redis_url, run)
    return failed


def get_run(db: Database, run_id: str, stale_after: float | None = None) -> TrainingRun | None:
    """One run (None if unknown), after marking it failed if its worker has died."""
    stale_after = stale_after or get_settings().training_stale_after
    run = db.get_training_run(run_id)
    if run is not None and not run.final:
        fail_stale_runs(db, stale_after)
        run = db.get_training_run(run_id)
    return run


def list_runs(db: Database, limit: int = 50, user_id: int | None = None,
              stale_after: float | None = None) -> list[TrainingRun]:
    """The newest runs first, stale ones already marked failed."""
    fail_stale_runs(db, stale_after or get_settings().training_stale_after)
    return db.list_training_runs(limit, user_id)


def cancel_run(celery: Celery, db: Database, run_id: str) -> TrainingRun | None:
    """Cancel a run: a queued one at once, a running one within one training step.

    Returns the run as it is now (a running run stays `running` with `cancel_requested`
    until the worker stops it; a finished run is unchanged), or None if unknown.
    """
    run = db.request_training_cancel(run_id)
    if run is None:
        return None
    redis_url = celery.conf.sieve.redis_url
    if not run.final:
        try:
            redisconn.connect(redis_url).set(cancel_key(run_id), "1", ex=7 * 24 * 3600)
        except redis.RedisError as exc:
            # The worker also sees cancel_requested at its next heartbeat.
            log.warning("training run %s: cancel flag not set on Redis: %s", run_id, exc)
    announce(redis_url, run)
    return run


def run_log(db: Database, run_id: str) -> str | None:
    """The run's log so far, or None if there is no such run."""
    run = db.get_training_run(run_id)
    return None if run is None else run.log or ""


def _summary(run: TrainingRun) -> str:
    """One line about a run."""
    p = run.progress or {}
    figures = ""
    if p.get("step"):
        figures = (f" epoch {p.get('epoch')}/{p.get('epochs')} step {p['step']}/"
                   f"{p.get('steps')} loss {p.get('loss', 0):.4f} acc {p.get('accuracy', 0):.4f}")
        if p.get("seconds_left") is not None and not run.final:
            figures += f" ~{p['seconds_left']:.0f} s left"
    outcome = f" -> {run.model} {run.version}" if run.version else ""
    outcome += f" ({run.promoted})" if run.promoted else ""
    why = f" ({run.reason})" if run.reason else ""
    stage = f" [{p['stage']}]" if p.get("stage") and not run.final else ""
    return f"{run.id} {run.model} {run.state}{stage}{figures}{outcome}{why}"


def get_args_parser() -> argparse.ArgumentParser:
    """submit, status, list, logs and cancel."""
    parser = argparse.ArgumentParser(prog="python -m workers.runs",
                                     description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=HelpFormatter)
    parser.add_argument("--json", action="store_true", help="print JSON")
    sub = parser.add_subparsers(dest="command", required=True)
    submit = sub.add_parser("submit", help="submit a training run",
                            formatter_class=HelpFormatter)
    for name, (kind, _, _) in PARAMS.items():
        flag = "--" + name.replace("_", "-")
        if kind is bool:
            submit.add_argument(flag, action="store_true", default=None, help=HELP[name])
        else:
            submit.add_argument(flag, type=kind, default=None, help=HELP[name],
                                choices=MODELS if name == "model" else
                                OPTIMIZERS if name == "optimizer" else None)
    submit.add_argument("--wait", action="store_true",
                        help="follow the run until it ends; exit 0 only when it is done")
    sub.add_parser("list", help="the newest runs", formatter_class=HelpFormatter)
    for command, text in (("status", "a run's state and progress"),
                          ("logs", "a run's log"), ("cancel", "cancel a run")):
        one = sub.add_parser(command, help=text, formatter_class=HelpFormatter)
        one.add_argument("run_id")
        if command in ("status", "logs"):
            one.add_argument("--follow", action="store_true",
                             help="keep printing until the run ends")
    return parser


def _follow(db: Database, run_id: str, print_log: bool, interval: float = 2.0) -> TrainingRun:
    """Print progress (or new log text) until the run ends; return it."""
    shown, last = 0, None
    while True:
        run = get_run(db, run_id)
        if print_log:
            print(run.log[shown:], end="", flush=True)
            shown = len(run.log)
        elif _summary(run) != last:
            last = _summary(run)
            print(last, flush=True)
        if run.final:
            return run
        time.sleep(interval)


def main(argv: list[str] | None = None) -> int:
    """Run one command; exit 2 for an unknown run or bad parameters."""
    args = get_args_parser().parse_args(argv)
    from workers import app  # the configured app, as the workers use it

    db = Database(app.conf.sieve.database_url)
    try:
        if args.command == "submit":
            params = {k: getattr(args, k) for k in PARAMS if getattr(args, k) is not None}
            run = submit_run(app, db, params)
            warning = no_worker_warning(app)
            if warning:
                print(f"warning: {warning}", file=sys.stderr, flush=True)
            print(json.dumps(run.to_dict(), indent=2) if args.json else run.id, flush=True)
            if args.wait:
                run = _follow(db, run.id, print_log=False)
                return 0 if run.state == "done" else 1
            return 0
        if args.command == "list":
            for run in list_runs(db):
                print(json.dumps(run.to_dict()) if args.json else _summary(run))
            return 0
        run = (cancel_run(app, db, args.run_id) if args.command == "cancel"
               else get_run(db, args.run_id))
        if run is None:
            print(f"error: no training run {args.run_id}", file=sys.stderr)
            return 2
        if args.command == "logs":
            if args.follow:
                _follow(db, run.id, print_log=True)
            else:
                print(run.log, end="")
        elif getattr(args, "follow", False):
            _follow(db, run.id, print_log=False)
        else:
            print(json.dumps(run.to_dict(), indent=2) if args.json else _summary(run))
        return 0
    except (InvalidParameters, QueueUnavailable) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        db.dispose()


if __name__ == "__main__":
    sys.exit(main())
