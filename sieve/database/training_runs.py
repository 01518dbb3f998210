"""Training runs: queued, started by one worker, its heartbeats, cancelled or finished."""

import uuid
from collections.abc import Iterable
from datetime import timedelta

from sqlalchemy import Connection, func, insert, or_, select, update

from sieve.database.engine import Store
from sieve.models import CANCELLED, FAILED, QUEUED, RUNNING, TrainingRun, utcnow

RUNS = TrainingRun.__table__


def _changed(connection: Connection, statement) -> TrainingRun | None:
    """Run an UPDATE of one run; the run as it is now, or None when no row matched."""
    row = connection.execute(statement.returning(*RUNS.c)).first()
    return TrainingRun(**row._mapping) if row else None


def _with_log(values: dict, log: str) -> dict:
    """`values` that also append `log` to the run's log."""
    if log:
        values["log"] = func.coalesce(RUNS.c.log, "") + log
    return values


class TrainingRuns(Store):
    """The training_runs table."""

    def create_training_run(self, model: str, params: dict, user_id: int | None = None,
                            redis_run_id: str | None = None) -> TrainingRun:
        """A new training run in state `queued`."""
        now = utcnow()
        with self.writing() as connection:
            row = connection.execute(insert(RUNS).values(
                id=uuid.uuid4().hex, model=model, params=params, user_id=user_id,
                state=QUEUED, cancel_requested=False, log="", redis_run_id=redis_run_id,
                created_at=now, updated_at=now).returning(*RUNS.c)).one()
        return TrainingRun(**row._mapping)

    def queued_runs_outside(self, redis_run_id: str, idle_for: float = 5.0
                            ) -> list[TrainingRun]:
        """Queued training runs last sent to another Redis run (or never sent), untouched
        for `idle_for` seconds (one being submitted right now is left alone)."""
        before = utcnow() - timedelta(seconds=idle_for)
        with self.session() as s:
            return list(s.scalars(
                select(TrainingRun)
                .where(TrainingRun.state == QUEUED, TrainingRun.updated_at < before,
                       or_(TrainingRun.redis_run_id.is_(None),
                           TrainingRun.redis_run_id != redis_run_id))
                .order_by(TrainingRun.created_at)))

    def mark_training_run_sent(self, run_id: str, redis_run_id: str) -> None:
        """Record which Redis (by run id) holds the training run's message."""
        with self.writing() as connection:
            connection.execute(update(RUNS).where(RUNS.c.id == run_id)
                               .values(redis_run_id=redis_run_id))

    def get_training_run(self, run_id: str) -> TrainingRun | None:
        """One training run by id, or None."""
        with self.session() as s:
            return s.get(TrainingRun, run_id)

    def list_training_runs(self, limit: int = 50, user_id: int | None = None
                           ) -> list[TrainingRun]:
        """The newest training runs first (of one user when given)."""
        query = select(TrainingRun).order_by(TrainingRun.created_at.desc()).limit(limit)
        if user_id is not None:
            query = query.where(TrainingRun.user_id == user_id)
        with self.session() as s:
            return list(s.scalars(query))

    def start_training_run(self, run_id: str, worker: str,
                           task_id: str | None = None) -> TrainingRun | None:
        """Move a queued run to `running` for this worker; None when it is not queued (a
        second delivery, or cancelled before it started)."""
        now = utcnow()
        with self.writing() as connection:
            return _changed(connection, update(RUNS)
                            .where(RUNS.c.id == run_id, RUNS.c.state == QUEUED)
                            .values(state=RUNNING, worker=worker, task_id=task_id,
                                    started_at=now, heartbeat_at=now, updated_at=now))

    def record_training_progress(self, run_id: str, log: str = "",
                                 **fields) -> TrainingRun | None:
        """Heartbeat of a running run: progress fields, log lines appended.

        Returns the run (its `cancel_requested` tells the worker to stop), or None when it
        is no longer running: then the worker must stop without publishing.
        """
        now = utcnow()
        values = _with_log({"heartbeat_at": now, "updated_at": now, **fields}, log)
        with self.writing() as connection:
            return _changed(connection, update(RUNS)
                            .where(RUNS.c.id == run_id, RUNS.c.state == RUNNING)
                            .values(**values))

    def request_training_cancel(self, run_id: str) -> TrainingRun | None:
        """Cancel a run: a queued one at once, a running one at its next step (the worker
        sees `cancel_requested`). A finished run is left as it is. None: no such run."""
        now = utcnow()
        with self.writing() as connection:
            connection.execute(update(RUNS)
                               .where(RUNS.c.id == run_id, RUNS.c.state == QUEUED)
                               .values(state=CANCELLED, reason="cancelled before it started",
                                       cancel_requested=True, updated_at=now,
                                       finished_at=now))
            connection.execute(update(RUNS)
                               .where(RUNS.c.id == run_id, RUNS.c.state == RUNNING)
                               .values(cancel_requested=True, updated_at=now))
            row = connection.execute(select(RUNS).where(RUNS.c.id == run_id)).first()
        return TrainingRun(**row._mapping) if row else None

    def finish_training_run(self, run_id: str, state: str,
                            allowed_from: Iterable[str] = (RUNNING,), log: str = "",
                            **fields) -> TrainingRun | None:
        """Move a run to a final state if it is in `allowed_from`; None when it was not."""
        now = utcnow()
        values = _with_log({"state": state, "updated_at": now, "finished_at": now,
                            **fields}, log)
        with self.writing() as connection:
            return _changed(connection, update(RUNS)
                            .where(RUNS.c.id == run_id, RUNS.c.state.in_(tuple(allowed_from)))
                            .values(**values))

    def fail_stale_training_runs(self, stale_after: float) -> list[TrainingRun]:
        """Mark failed the running runs whose heartbeat is older than `stale_after`
        seconds (their worker died); returns them."""
        before = utcnow() - timedelta(seconds=stale_after)
        with self.session() as s:
            stale = list(s.scalars(select(TrainingRun).where(
                TrainingRun.state == RUNNING, TrainingRun.heartbeat_at < before)))
        failed = []
        for run in stale:
            reason = (f"the training worker {run.worker} stopped sending heartbeats (last "
                      f"at {_iso_utc(run.heartbeat_at)}): it died or lost the database, and "
                      "nothing was published; submit the run again")
            with self.writing() as connection:
                changed = _changed(connection, update(RUNS)
                                   .where(RUNS.c.id == run.id, RUNS.c.state == RUNNING,
                                          RUNS.c.heartbeat_at < before)
                                   .values(state=FAILED, reason=reason, updated_at=utcnow(),
                                           finished_at=utcnow()))
            if changed:
                failed.append(changed)
        return failed


def _iso_utc(moment) -> str:
    """A timestamp for a message, in UTC (SQLite hands back naive datetimes: they are UTC)."""
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC") if moment else "never"
