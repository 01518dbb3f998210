"""Keeping a serving worker's models on the versions the registry serves.

A `Reloader` thread per worker process asks the model store which version of each model
is served, and switches (`ServedModels.switch`) when that changed:

- at once when the registry announces a change (`sieve.modelchanges`: a promotion, a
  rollback, a new version while no `production` alias pins one);
- every SIEVE_MODEL_RELOAD_INTERVAL seconds regardless, for an announcement it missed
  (Redis restarting); 0 turns the timer off.

Predictions never wait for it: the old version serves until the new one is loaded and
answers. A version that cannot be loaded is logged, kept in the worker's report with its
error, tried again at the next check, and the worker goes on with the version it has.
The worker writes what it serves to Redis after each change and every few seconds.
"""

import logging
import os
import socket
import threading
import time
from datetime import UTC, datetime

from sieve import modelchanges
from sieve.store import StoreError
from workers.serving import CLASSIFIER, FILTER, ServedModels

log = logging.getLogger(__name__)

REPORT_EVERY = 5.0  # seconds between two reports of a worker when nothing changes


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def worker_name(node: str | None = None) -> str:
    """A name for this process in the reports: the Celery node name and the process id."""
    return f"{node or socket.gethostname()}/{os.getpid()}"


class Reloader:
    """The thread that switches a worker's models, and reports what it serves."""

    def __init__(self, models: ServedModels, worker: str, redis_url: str | None,
                 interval: float, queues: tuple[str, ...] = (),
                 names: tuple[str, ...] = (FILTER, CLASSIFIER),
                 report_every: float = REPORT_EVERY):
        self.models, self.worker, self.interval = models, worker, interval
        self.queues, self.names, self.report_every = sorted(queues), names, report_every
        self.redis = modelchanges.client(redis_url) if redis_url else None
        self.announcements = (modelchanges.Announcements(redis_url, self.announced)
                              if redis_url else None)
        self.problems: dict[str, dict] = {}  # model -> the version refused and why
        self._wanted: set[str] = set()
        self._wake = threading.Condition()
        self.stopped = threading.Event()
        self.checks = 0  # checks done, announced or timed (for tests and logs)
        self._thread: threading.Thread | None = None

    def start(self) -> "Reloader":
        """Receive announcements and run the checks in daemon threads."""
        if self.announcements is not None:
            self.announcements.start()
        self._thread = threading.Thread(target=self._run, name="sieve-model-reload",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop both threads (each within a second)."""
        self.stopped.set()
        if self.announcements is not None:
            self.announcements.close()
        with self._wake:
            self._wake.notify()

    def announced(self, name: str) -> None:
        """Called by the announcements thread: check `name` now."""
        if name in self.names:
            with self._wake:
                self._wanted.add(name)
                self._wake.notify()

    def _run(self) -> None:
        """Check what is announced at once, everything when the timer says so, and report
        every `report_every` seconds."""
        timed = self.interval > 0
        next_check = time.monotonic() + self.interval if timed else float("inf")
        next_report = time.monotonic()
        while not self.stopped.is_set():
            with self._wake:
                if not self._wanted:
                    self._wake.wait(max(0.0, min(next_check, next_report) - time.monotonic()))
                names, self._wanted = self._wanted, set()
            if self.stopped.is_set():
                break
            if time.monotonic() >= next_check:
                names |= set(self.names)
                next_check = time.monotonic() + self.interval
            for name in sorted(names):
                self.check(name)
            if names or time.monotonic() >= next_report:
                self.report()
                next_report = time.monotonic() + self.report_every

    def check(self, name: str) -> str | None:
        """Switch `name` to the version the store serves if it changed; that version, or
        None. Never raises: a failure is logged and kept for the report."""
        self.checks += 1
        try:
            version = self.models.store().served(name)
        except StoreError as exc:
            log.warning("could not ask the model store which %s to serve: %s", name, exc)
            return None
        if version is None:
            return None
        current = self.models.serving().get(name)
        try:
            switched = self.models.switch(name, version)
        except Exception as exc:  # noqa: BLE001 - a version that cannot load must not stop serving
            log.error("could not load %s %s; still serving %s: %s", name, version,
                      current or "nothing", exc)
            self.problems[name] = {"version": version, "error": str(exc), "at": _now()}
            return None
        self.problems.pop(name, None)
        return version if switched else None

    def state(self) -> dict:
        """What this process serves, per model: version, since when, and the version it
        refused with the reason, if any."""
        serving = self.models.serving()
        return {name: {"version": serving.get(name), "since": self.models.since.get(name),
                       **({"refused": self.problems[name]} if name in self.problems else {})}
                for name in self.names if name in serving or name in self.problems}

    def report(self) -> bool:
        """Write the report to Redis, with a time to live of three report periods."""
        if self.redis is None:
            return False
        return modelchanges.write_report(
            self.redis, self.worker,
            {"models": self.state(), "queues": self.queues, "updated": _now(),
             "reload_interval": self.interval},
            ttl=3 * self.report_every)
