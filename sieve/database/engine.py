"""The engine, the transactions and the one write path every aggregate of the database uses."""

import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext

from sqlalchemy import Connection, create_engine, event, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

# The largest integer the databases hold (a signed 64-bit column): larger ids or
# offsets do not exist, and are refused before they reach a query.
LARGEST_INTEGER = 2**63 - 1


def make_engine(url: str) -> Engine:
    """An engine for SQLite (the embedded default) or PostgreSQL, tuned for many threads."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=40)


def _sqlite_pragmas(connection, _record) -> None:
    """WAL lets readers and one writer work at once; foreign keys are off by default."""
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


class Store:
    """A database's engine: ORM sessions to read, `writing` to write."""

    def __init__(self, url: str):
        self.url = url
        self.engine = make_engine(url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        # SQLite has one writer at a time, and its busy handler waits by sleeping: threads
        # of one process take turns here instead. PostgreSQL needs no such lock.
        self._write_lock = threading.Lock() if url.startswith("sqlite") else nullcontext()

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A transaction to read records: committed when the block ends, rolled back on an
        exception."""
        with self._sessions() as session, session.begin():
            yield session

    @contextmanager
    def writing(self) -> Iterator[Connection]:
        """The write transaction every change goes through, on a bare connection (Core
        statements: the hot paths skip the ORM)."""
        with self._write_lock, self.engine.begin() as connection:
            yield connection

    def ping(self) -> None:
        """Run a trivial query; raises SQLAlchemyError when the database is unreachable."""
        with self.engine.connect() as connection:
            connection.execute(select(1))

    def dispose(self) -> None:
        """Close every pooled connection (after a fork, or at shutdown)."""
        self.engine.dispose()
