"""One training run inside a training worker: the training CLI's own code, followed.

`execute` moves a queued run to `running` (a second delivery of the same message finds it
running and does nothing), builds the training command line from the run's parameters
and calls `training.train.main` with a `Reporter`:

- every step updates the live figures and checks for a cancel (a Redis key that
  `cancel_run` sets, and the record's `cancel_requested`): a cancelled run stops within
  one step, and a cancel before the publishing stage means nothing is published;
- a heartbeat thread writes the figures, the sampled loss curve and new log lines to the
  record every SIEVE_TRAINING_HEARTBEAT seconds and publishes them on Redis. When the
  worker dies the heartbeat stops, and `fail_stale_runs` marks the run failed;
- the `training` logger's lines (what the CLI prints) become the run's log.
"""

import logging
import threading
import time

import redis
import sqlalchemy.exc

from sieve.database import Database
from sieve.models import CANCELLED, DONE, FAILED, RUNNING, TrainingRun
from training import checkpoint, options, registry, train
from training.data import DataError
from training.engine import Budget
from training.store import StoreError, open_store
from workers.client import _redis
from workers.runs import announce, cancel_key, publish, train_argv

log = logging.getLogger("training.job")

MAX_CURVE_POINTS = 2000
SMOOTHING = 0.1  # weight of the newest step in the displayed loss and accuracy


class RunStopped(Exception):
    """Raised from a progress hook to end a run early (cancelled, or no longer ours)."""

    def __init__(self, state: str | None, reason: str):
        super().__init__(reason)
        self.state, self.reason = state, reason


class Reporter(train.Progress):
    """Collects a run's progress in the training thread; `beat` writes it out."""

    def __init__(self, db: Database, redis_url: str, run: TrainingRun):
        self.db, self.redis_url, self.run_id = db, redis_url, run.id
        defaults = options.MODEL_DEFAULTS[run.model]
        self.lock = threading.Lock()
        self.cancelled, self.lost = threading.Event(), threading.Event()
        self.started = time.monotonic()
        self.progress: dict = {"stage": "starting",
                               "epochs": run.params.get("epochs") or defaults["epochs"]}
        self.curve: list[dict] = []
        self.history: list[dict] = []
        self.lines: list[str] = []
        self.version: str | None = None
        self.card: dict | None = None

    # Hooks called by the training code, in the training thread.

    def stage(self, name: str) -> None:
        """Enter a stage; stop here when a cancel came (so before publishing too)."""
        self.check()
        with self.lock:
            self.progress["stage"] = name
        log.info("stage: %s", name)

    def step(self, epoch: int, budget: Budget, loss: float, accuracy: float) -> None:
        """Update the live figures after one step; stop when a cancel came."""
        with self.lock:
            p = self.progress
            first = "loss" not in p
            p["loss"] = loss if first else (1 - SMOOTHING) * p["loss"] + SMOOTHING * loss
            p["accuracy"] = (accuracy if first
                             else (1 - SMOOTHING) * p["accuracy"] + SMOOTHING * accuracy)
            p.update(epoch=epoch, step=budget.step, steps=budget.total_steps,
                     fraction=round(budget.progress(), 4), seconds_left=budget.seconds_left(),
                     elapsed=round(time.monotonic() - self.started, 1))
        self.check()

    def epoch(self, entry: dict) -> None:
        """Keep the epoch's metrics and push them at once (pages draw them as a point)."""
        with self.lock:
            self.history.append(entry)
        publish(self.redis_url, self.run_id, {"type": "epoch", "state": RUNNING,
                                              "entry": entry})

    def published(self, version: str, card: dict) -> None:
        """Remember the new version for the run's record."""
        self.version, self.card = version, card

    def check(self) -> None:
        """Raise RunStopped when the run was cancelled or is no longer this worker's."""
        if self.lost.is_set():
            raise RunStopped(None, "the run was ended elsewhere (marked failed or cancelled)")
        if self.cancelled.is_set() or self._cancel_flag():
            with self.lock:
                where = self.progress.get("stage", "starting")
                if where == "training":
                    where += f" (epoch {self.progress.get('epoch')}, step " \
                             f"{self.progress.get('step')})"
            raise RunStopped(CANCELLED, f"cancelled on request during {where}; nothing was "
                                        "published")

    def _cancel_flag(self) -> bool:
        """The Redis key `cancel_run` sets; an unreachable Redis leaves it to the heartbeat."""
        try:
            return bool(_redis(self.redis_url).exists(cancel_key(self.run_id)))
        except redis.RedisError:
            return False  # the heartbeat still reads cancel_requested from the record

    # Called by the heartbeat thread, and once more at the end.

    def add_line(self, line: str) -> None:
        """A log line for the run's record."""
        with self.lock:
            self.lines.append(line)

    def snapshot(self) -> tuple[dict, str]:
        """The fields to write now, and the log text gathered since the last write."""
        with self.lock:
            p = dict(self.progress)
            if p.get("step") and (not self.curve or self.curve[-1]["step"] != p["step"]):
                self.curve.append({k: p.get(k) for k in
                                   ("step", "epoch", "loss", "accuracy", "elapsed")})
                if len(self.curve) > MAX_CURVE_POINTS:
                    self.curve = self.curve[::2]
            fields = {"progress": p, "curve": list(self.curve), "history": list(self.history)}
            text, self.lines = "".join(self.lines), []
        return fields, text

    def beat(self) -> None:
        """Write progress and log to the record; learn of a cancel or of losing the run."""
        fields, text = self.snapshot()
        try:
            run = self.db.record_training_progress(self.run_id, log=text, **fields)
        except sqlalchemy.exc.OperationalError as exc:
            log.warning("heartbeat not recorded (database unreachable): %s", exc)
            with self.lock:
                self.lines.insert(0, text)
            return
        if run is None:
            self.lost.set()
        elif run.cancel_requested:
            self.cancelled.set()
        publish(self.redis_url, self.run_id, {"type": "progress", "state": RUNNING,
                                              "progress": fields["progress"],
                                              "point": (fields["curve"] or [None])[-1]})


class Heartbeat(threading.Thread):
    """Calls `reporter.beat()` every `interval` seconds until stopped."""

    def __init__(self, reporter: Reporter, interval: float):
        super().__init__(daemon=True, name="training-heartbeat")
        self.reporter, self.interval = reporter, interval
        self.stopped = threading.Event()

    def run(self) -> None:
        """Beat until stopped."""
        while not self.stopped.wait(self.interval):
            self.reporter.beat()


class LogCapture(logging.Handler):
    """Copies the training logger's lines into the run's log."""

    def __init__(self, reporter: Reporter):
        super().__init__(logging.INFO)
        self.reporter = reporter
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        """Keep one formatted line."""
        self.reporter.add_line(self.format(record) + "\n")


def execute(db: Database, redis_url: str, run_id: str, worker: str,
            task_id: str | None = None, heartbeat: float = 2.0,
            store_url: str | None = None) -> str | None:
    """Run a queued training run to its end; returns its final state (None: not run)."""
    run = db.start_training_run(run_id, worker, task_id)
    if run is None:
        log.info("training run %s is not queued (cancelled, already started or unknown): "
                 "not running it", run_id)
        return None
    announce(redis_url, run)
    reporter = Reporter(db, redis_url, run)
    logger = logging.getLogger("training")
    capture, level = LogCapture(reporter), logger.level
    logger.addHandler(capture)
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)
    beat = Heartbeat(reporter, heartbeat)
    beat.start()
    try:
        state, fields = _train(run, reporter, store_url)
    finally:
        beat.stopped.set()
        beat.join(timeout=60)
        logger.removeHandler(capture)
        logger.setLevel(level)
    if state is None:
        return None  # ended elsewhere: the record already says how
    final, text = reporter.snapshot()
    final["progress"]["stage"] = state
    finished = db.finish_training_run(run_id, state, (RUNNING,), log=text, **final, **fields)
    if finished is not None:
        announce(redis_url, finished)
    return state


def _train(run: TrainingRun, reporter: Reporter, store_url: str | None
           ) -> tuple[str | None, dict]:
    """The training itself; returns the final state and the fields to record."""
    argv = train_argv(run.params)
    try:
        args = train.get_args_parser().parse_args(argv)
        args.argv = argv
        args.model_store = store_url
        log.info("training run %s: python -m training.train %s", run.id, " ".join(argv))
        train.main(args, reporter)
    except RunStopped as exc:
        log.info("%s", exc.reason)
        return exc.state, {"reason": exc.reason}
    except (train.TrainError, DataError, StoreError, checkpoint.CheckpointError) as exc:
        log.error("error: %s", exc)
        return FAILED, {"reason": str(exc)}
    except Exception as exc:  # noqa: BLE001 - the run must end failed, whatever went wrong
        log.exception("training run %s failed", run.id)
        return FAILED, {"reason": f"internal error in the training worker: {exc}"}
    fields = {"version": reporter.version, "metrics": reporter.card.get("metrics")}
    if run.params.get("promote"):
        fields["promoted"] = _promote(run, reporter.version, store_url)
    return DONE, fields


def _promote(run: TrainingRun, version: str, store_url: str | None) -> str:
    """Promote the new version if it beats production; say what happened."""
    try:
        promoted, why = registry.promote_if_better(run.model, version,
                                                   store=open_store(store_url),
                                                   by=f"training run {run.id}")
    except StoreError as exc:
        log.error("automatic promotion failed: %s", exc)
        return f"not promoted: {exc}"
    log.info("%s %s: %s", "promoted" if promoted else "not promoted", version, why)
    return f"{'promoted' if promoted else 'not promoted'}: {why}"
