"""Changes of the served model versions, announced to the serving workers over Redis, and
what each worker reports it serves.

The model store is the truth (its `production` aliases, else the latest versions); an
announcement only tells the workers to ask it now instead of at their next timed check. An
announcement that cannot be sent (Redis away) is logged and dropped: the workers' timed
check (SIEVE_MODEL_RELOAD_INTERVAL) catches up with the change.

Each serving worker writes what it serves to a Redis hash of its own
(`sieve:models:serving:<worker>`), refreshed every few seconds with a time to live, so a
worker that stops disappears from the reports. The web tier reads them for
`GET /api/v1/models`, the models page and `/readyz`.
"""

import json
import logging
import threading
from collections.abc import Callable

import redis

from sieve.pubsub import receive

log = logging.getLogger(__name__)

CHANNEL = "sieve:models:changes"
REPORT_PREFIX = "sieve:models:serving:"


def client(redis_url: str) -> redis.Redis:
    """A Redis client that gives up quickly when Redis is away."""
    return redis.Redis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=2)


class Announcer:
    """Tells the serving workers that the version served of a model changed."""

    def __init__(self, redis_url: str):
        self.redis_url = redis_url
        self.redis = client(redis_url)

    def announce(self, name: str, version: str | None) -> bool:
        """Publish the change; False (and a warning) when Redis cannot take it."""
        try:
            self.redis.publish(CHANNEL, json.dumps({"model": name, "version": version}))
        except redis.RedisError as exc:
            log.warning("%s %s not announced to the serving workers (%s): they switch at "
                        "their next timed check", name, version, exc)
            return False
        return True


class Announcements:
    """A thread that receives the announcements and hands each model name to `handle`.

    When Redis goes away it subscribes again once a second; what was announced meanwhile
    is lost, which the workers' timed check makes up for."""

    def __init__(self, redis_url: str, handle: Callable[[str], None],
                 retry_after: float = 1.0):
        self.redis, self.handle, self.retry_after = client(redis_url), handle, retry_after
        self.subscribed = threading.Event()
        self.stopped = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start receiving in a daemon thread."""
        self._thread = threading.Thread(target=self._run, name="sieve-model-changes",
                                        daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop the thread: it ends within a second, with its connection."""
        self.stopped.set()

    def _run(self) -> None:
        """Receive until stopped; subscribed again after each failure."""
        receive(self.redis, lambda pubsub: pubsub.subscribe(CHANNEL), self._dispatch,
                self.subscribed, self.stopped, self.retry_after, "model announcements")

    def _dispatch(self, message: dict) -> None:
        """Hand a well-formed announcement's model name on; ignore anything else."""
        try:
            name = json.loads(message["data"])["model"]
        except (ValueError, KeyError, TypeError):
            log.warning("model announcements: ignored a malformed message %r",
                        message["data"][:200])
            return
        if isinstance(name, str):
            self.handle(name)


def write_report(redis_client: redis.Redis, worker: str, report: dict, ttl: float) -> bool:
    """Replace a worker's report (JSON fields: `models`, `queues`, `updated`, ...); it
    expires after `ttl` seconds unless written again. False when Redis is away."""
    key = REPORT_PREFIX + worker
    try:
        with redis_client.pipeline() as pipe:
            pipe.delete(key)
            pipe.hset(key, mapping={field: json.dumps(value) for field, value in report.items()})
            pipe.expire(key, max(1, round(ttl)))
            pipe.execute()
    except redis.RedisError as exc:
        log.warning("serving report of %s not written: %s", worker, exc)
        return False
    return True


def read_reports(redis_client: redis.Redis) -> list[dict]:
    """Every live worker's report, by worker name: [{"worker": ..., "models": {...}}]."""
    reports = []
    for key in sorted(redis_client.scan_iter(match=REPORT_PREFIX + "*", count=500)):
        fields = redis_client.hgetall(key)
        if not fields:
            continue  # expired between the scan and the read
        report = {field.decode(): json.loads(value) for field, value in fields.items()}
        reports.append({"worker": key.decode()[len(REPORT_PREFIX):], **report})
    return reports


def by_model(reports: list[dict]) -> dict[str, list[dict]]:
    """Per model name, each worker's line: worker, version, since and any load error."""
    models: dict[str, list[dict]] = {}
    for report in reports:
        for name, state in (report.get("models") or {}).items():
            models.setdefault(name, []).append(
                {"worker": report["worker"], "queues": report.get("queues", []),
                 "updated": report.get("updated"), **state})
    return models
