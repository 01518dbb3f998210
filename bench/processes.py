"""Local service processes for the benchmarks and the tests: a private redis-server, Celery
workers started with the documented command, and moto's S3 server. Every wait has a
timeout.
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import redis

from sieve.config import ROOT


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(predicate, timeout: float, what: str, interval: float = 0.05):
    """Poll until predicate() is truthy; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


def terminate(process: subprocess.Popen, timeout: float = 15) -> None:
    """SIGTERM a process and wait for it; SIGKILL if it takes longer than `timeout` s."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


class RedisServer:
    """A redis-server on a free port that keeps nothing on disk (like the machine's)."""

    def __init__(self, folder: Path):
        self.binary = shutil.which("redis-server")
        self.folder, self.port = folder, free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        """Start the server and wait until it answers."""
        log = open(self.folder / "redis.log", "ab")  # noqa: SIM115 - lives with the process
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.folder)], stdout=log, stderr=log)
        client = redis.Redis.from_url(self.url, socket_timeout=1)
        wait_for(lambda: self._pings(client), 10, f"redis-server on port {self.port}")

    @staticmethod
    def _pings(client: redis.Redis) -> bool:
        try:
            return client.ping()
        except redis.ConnectionError:
            return False

    def stop(self) -> None:
        """Stop the server (its queues are gone: it keeps nothing on disk)."""
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)

    def restart(self) -> None:
        """Stop and start again on the same port."""
        self.stop()
        self.start()


class Worker:
    """`celery -A workers worker` (or another `app`) in its own process, with its log in a
    file."""

    def __init__(self, name: str, env: dict, folder: Path, queues: str = "filter,classify",
                 loglevel: str = "INFO", app: str = "workers"):
        self.name, self.queues, self.loglevel, self.app = name, queues, loglevel, app
        self.env = {**os.environ, **env}
        self.log_path = folder / f"worker-{name}.log"
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 90) -> "Worker":
        """Start the worker and wait for Celery's `ready.` line."""
        log = open(self.log_path, "ab")  # noqa: SIM115 - lives with the process
        self.process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", self.app, "worker", "-Q", self.queues,
             "-n", f"{self.name}@%h", "--loglevel", self.loglevel, "--without-gossip",
             "--without-mingle"], cwd=ROOT, env=self.env, stdout=log, stderr=log)
        wait_for(self._ready, timeout, f"worker {self.name} to be ready", interval=0.2)
        return self

    def _ready(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"worker {self.name} exited:\n{self.log()[-3000:]}")
        return "ready." in self.log()

    def log(self) -> str:
        """What the worker has logged so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self) -> None:
        """SIGKILL: no warm shutdown, no acknowledgements."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        """Warm shutdown (SIGTERM), killed if it takes longer than 30 s."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.kill()


class S3Server:
    """moto's S3 server (`python -m moto.server`, the real S3 HTTP protocol) on a free port,
    for tests and local trials of MODEL_STORE_URL=s3://... moto serves every AWS API it
    knows on the one port (SageMaker too); `module` runs another server module instead."""

    def __init__(self, folder: Path, module: str = "moto.server"):
        self.folder, self.port, self.module = folder, free_port(), module
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        """Start the server and wait until it answers HTTP."""
        log = open(self.folder / "moto.log", "ab")  # noqa: SIM115 - lives with the process
        self.process = subprocess.Popen(
            [sys.executable, "-m", self.module, "-H", "127.0.0.1", "-p", str(self.port)],
            cwd=ROOT, stdout=log, stderr=log)
        wait_for(self._answers, 30, f"moto's S3 server on port {self.port}", interval=0.1)

    def _answers(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"moto.server exited: see {self.folder / 'moto.log'}")
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return True
        except OSError:
            return False

    def stop(self) -> None:
        """Stop the server; everything it held is gone."""
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
