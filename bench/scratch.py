"""The throwaway resources every benchmark starts from: a folder, a private redis-server
that keeps nothing on disk, and a fresh SQLite database at the newest schema."""

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bench.processes import RedisServer
from sieve.migrate import upgrade


@dataclass
class Scratch:
    """Where a benchmark run keeps its files, its Redis and its database."""

    folder: Path
    redis: RedisServer
    database_url: str


@contextmanager
def scratch(prefix: str = "sieve-bench-") -> Iterator[Scratch]:
    """Start the resources; stop Redis and remove the folder afterwards."""
    with tempfile.TemporaryDirectory(prefix=prefix) as name:
        folder = Path(name)
        server = RedisServer(folder)
        server.start()
        database_url = f"sqlite:///{folder / 'sieve.db'}"
        try:
            upgrade(database_url)
            yield Scratch(folder, server, database_url)
        finally:
            server.stop()
