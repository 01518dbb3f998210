"""Run the whole service on this machine: what `make run` does after the set-up.

    python -m sieve.localrun                       # the default models train for 90 s each
    python -m sieve.localrun --train-seconds 0     # full training runs (the epoch count decides)

In order, with a line of progress for each stage: trains the classifier and the filter
that have no published version yet (with a time budget), migrates the database, starts
redis-server when nothing answers at REDIS_URL, starts a serving worker (`-Q
filter,classify`), a training worker (`-Q training`) and a webhooks worker (`-Q webhooks`),
then the web tier (`flask run`, on FLASK_RUN_HOST:FLASK_RUN_PORT, default 127.0.0.1:5000),
and says when it answers.
Workers, web tier and Redis log to var/log/. Ctrl-C (or SIGTERM) stops everything it
started, the Redis it started last; when one of them exits on its own, it stops the rest.
"""

import argparse
import os
import shlex
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import redis

from sieve import consumers
from sieve.config import ROOT, get_settings
from sieve.localredis import answers, server_argv
from sieve.queues import SERVING_QUEUES, TRAINING_QUEUE, WEBHOOKS_QUEUE
from sieve.store import StoreError, open_store

MODELS = ("classifier", "filter")
STAGES = 6
READY_TIMEOUT = 180.0  # seconds for a worker to load its models, or the web tier to answer
STOP_TIMEOUT = 15.0  # seconds of warm shutdown before a process is killed


class Stop(Exception):
    """Ctrl-C or SIGTERM: stop everything that was started."""


class Failed(RuntimeError):
    """A stage could not be completed; the message says why and what to do."""


@dataclass
class Child:
    """A process this run started, in its own session (Ctrl-C reaches only this run)."""

    name: str
    process: subprocess.Popen
    log: Path | None

    def tail(self, lines: int = 20) -> str:
        """The last lines of its log."""
        if self.log is None or not self.log.exists():
            return ""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


class LocalRun:
    """The processes of one `make run`, started in order and stopped in reverse."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.started = time.monotonic()
        self.children: list[Child] = []
        self.logs = ROOT / "var" / "log"
        self.settings = get_settings()

    def say(self, stage: int | None, text: str) -> None:
        """One line of progress, with the seconds since the start."""
        where = f"[{stage}/{STAGES}] " if stage else ""
        print(f"run: {time.monotonic() - self.started:4.0f} s {where}{text}", flush=True)

    def start(self, name: str, argv: list[str], to_log: bool = True) -> Child:
        """Start a process in its own session, its output in var/log/<name>.log."""
        log = self.logs / f"{name}.log" if to_log else None
        output = None
        if log is not None:
            self.logs.mkdir(parents=True, exist_ok=True)
            output = open(log, "ab")  # noqa: SIM115 - the child writes to it until it ends
        process = subprocess.Popen(argv, cwd=ROOT, stdout=output, stderr=output,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
        if output is not None:
            output.close()  # the child holds its own copy
        child = Child(name, process, log)
        self.children.append(child)
        return child

    def train_missing_models(self) -> None:
        """Stages 1-2: train each default model that has no published version."""
        try:
            store = open_store()
            missing = [m for m in MODELS if not store.latest(m)]
        except StoreError as exc:
            raise Failed(f"the model store cannot be read: {exc}") from exc
        for stage, model in enumerate(MODELS, 1):
            if model not in missing:
                self.say(stage, f"{model}: a version is published; not training it")
                continue
            budget = self.args.train_seconds
            argv = ["--download-data", "--train", "--model", model]
            if budget > 0:
                argv += ["--time-limit", f"{budget:g}"]
            argv += shlex.split(self.args.train_args)
            self.say(stage, f"{model}: none published; training one "
                     f"({f'{budget:g} s budget' if budget > 0 else 'full run'}): "
                     f"python -m training.train {shlex.join(argv)}")
            child = self.start(f"train-{model}", [sys.executable, "-m", "training.train",
                                                  *argv], to_log=False)
            code = child.process.wait()
            self.children.remove(child)
            if code != 0:
                raise Failed(f"training the {model} failed (exit {code}); see the lines above")
            self.say(stage, f"{model}: trained and published")

    def migrate(self) -> None:
        """Stage 3: the database to the newest schema."""
        from sieve.migrate import upgrade

        upgrade(self.settings.database_url)
        self.say(3, f"database: migrated ({self.settings.database_url})")

    def ensure_redis(self) -> None:
        """Stage 4: use the Redis at REDIS_URL, or start one on this machine."""
        url = self.settings.redis_url
        if answers(url):
            self.say(4, f"redis: answering at {url}; using it")
            return
        argv = server_argv(url)
        if argv is None:
            raise Failed(f"nothing answers at {url}; start Redis there (Debian: apt-get "
                         "install redis-server), or set REDIS_URL")
        child = self.start("redis", argv)
        self.wait_until(lambda: answers(url), child, f"redis-server at {url}", 30)
        self.say(4, f"redis: started redis-server at {url} (pid {child.process.pid}, "
                 f"log var/log/redis.log)")

    def start_workers(self) -> None:
        """Stage 5: serving, training and webhooks workers; ready once each records its queues."""
        client = redis.Redis.from_url(self.settings.redis_url, socket_timeout=5)
        since = time.time()
        workers = [("serving-worker", ",".join(SERVING_QUEUES), "serving"),
                   ("training-worker", TRAINING_QUEUE, "training"),
                   ("webhooks-worker", WEBHOOKS_QUEUE, "webhooks")]
        started = [(self.start(name, [sys.executable, "-m", "celery", "-A", "workers",
                                      "worker", "-Q", queues, "-n", f"{node}@%h",
                                      "--loglevel", "INFO"]), queues)
                   for name, queues, node in workers]
        for child, queues in started:
            self.say(5, f"{child.name}: started (-Q {queues}, pid {child.process.pid}, "
                     f"log var/log/{child.name}.log); loading")
        for child, queues in started:
            queue = queues.split(",")[0]
            self.wait_until(lambda q=queue: consumers.listening(client, q, since) > 0,
                            child, f"the {child.name} to be ready", READY_TIMEOUT)
            self.say(5, f"{child.name}: ready")
        client.close()

    def start_web(self) -> str:
        """Stage 6: the web tier; ready when /healthz answers."""
        host, port = self.settings.flask_run_host, str(self.settings.flask_run_port)
        child = self.start("web", [sys.executable, "-m", "flask", "--app", "web", "run",
                                   "--host", host, "--port", port])
        self.say(6, f"web: started (pid {child.process.pid}, log var/log/web.log)")
        url = f"http://{host}:{port}"
        self.wait_until(lambda: _healthy(url), child, f"the web tier at {url}", READY_TIMEOUT)
        return url

    def wait_until(self, ready, child: Child, what: str, timeout: float) -> None:
        """Poll `ready()`; fail when `child` exits first or after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while not ready():
            if child.process.poll() is not None:
                raise Failed(f"{child.name} exited (code {child.process.returncode}) before "
                             f"{what} answered; the end of its log:\n{child.tail()}")
            if time.monotonic() > deadline:
                raise Failed(f"{what} did not answer within {timeout:g} s; the end of "
                             f"{child.name}'s log:\n{child.tail()}")
            time.sleep(0.2)

    def watch(self) -> None:
        """Until Ctrl-C, or until a process exits on its own (an error, then)."""
        while True:
            for child in self.children:
                if child.process.poll() is not None:
                    raise Failed(f"{child.name} exited (code {child.process.returncode}); "
                                 f"the end of its log:\n{child.tail()}")
            time.sleep(0.5)

    def stop_all(self) -> None:
        """Stop the processes in reverse order of starting: warm shutdown, then a kill."""
        for child in reversed(self.children):
            process = child.process
            if process.poll() is None:
                self.say(None, f"stopping {child.name} (pid {process.pid})")
                _signal_group(process, signal.SIGTERM)
                try:
                    process.wait(STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    self.say(None, f"{child.name} did not stop within {STOP_TIMEOUT:g} s; "
                             "killing it")
            _signal_group(process, signal.SIGKILL)  # whatever it left in its session
            process.wait()
        self.children.clear()


def _signal_group(process: subprocess.Popen, sig: int) -> None:
    """Send `sig` to the process's session (its process group: it leads both)."""
    try:
        os.killpg(process.pid, sig)
    except ProcessLookupError:
        pass  # the group is empty: everything in it has exited


def _healthy(url: str) -> bool:
    """True when the web tier answers /healthz."""
    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=2) as answer:
            return answer.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _stop(signum, _frame) -> None:
    raise Stop(signal.Signals(signum).name)


def get_args_parser() -> argparse.ArgumentParser:
    """The command-line options, each with its default in the help text."""
    parser = argparse.ArgumentParser(prog="python -m sieve.localrun",
                                     description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 2)[2])
    parser.add_argument("--train-seconds", type=float, default=90,
                        help="training time budget of each missing default model; 0 trains "
                             "for the full default epochs (default: 90)")
    parser.add_argument("--train-args", default="",
                        help="more options for python -m training.train, in one string "
                             "(default: none)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run until Ctrl-C; exit 0 then, 1 when a stage failed or a process died."""
    args = get_args_parser().parse_args(argv)
    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    run = LocalRun(args)
    code = 0
    try:
        run.train_missing_models()
        run.migrate()
        run.ensure_redis()
        run.start_workers()
        url = run.start_web()
        run.say(None, f"ready: open {url} (sign up at {url}/register); Ctrl-C stops "
                "everything")
        run.watch()
    except Stop as stop:
        run.say(None, f"{stop}: stopping")
    except Failed as exc:
        run.say(None, f"error: {exc}")
        code = 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the stop runs to its end
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        run.stop_all()
        run.say(None, "stopped")
    return code


if __name__ == "__main__":
    sys.exit(main())
