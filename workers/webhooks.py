"""Webhook deliveries: the `sieve.webhooks.deliver` task on the `webhooks` queue, and the
relay that sends it for each delivery that is due.

Run by a worker of its own, `celery -A workers worker -Q webhooks -n webhooks@%h`: a
receiver that is slow or down then holds only this worker's threads, never a prediction.
The deliveries are recorded in the database with the state changes they tell of; the
relay (a thread of each webhooks worker) claims the due ones every
SIEVE_WEBHOOK_POLL_INTERVAL seconds and sends one task per claim. A task makes one
attempt and records it; a failed attempt is due again after a backoff (doubling from
SIEVE_WEBHOOK_RETRY_BASE seconds) until SIEVE_WEBHOOK_RETRY_FOR seconds have passed
since the event. Nothing here imports torch.
"""

import logging
import threading
import time
from datetime import timedelta

import kombu.exceptions
import redis
import sqlalchemy.exc
import urllib3
from celery import Celery, shared_task
from celery.signals import worker_ready, worker_shutdown

from sieve import webhooks
from sieve.config import Settings
from sieve.database import Database, Deliveries
from sieve.models import iso, utcnow
from workers.celery_app import WEBHOOK_TASK

log = logging.getLogger(__name__)

QUEUE = "webhooks"
DELIVERED, HTTP_ERROR, TIMEOUT, UNREACHABLE, REFUSED = (
    "delivered", "http_error", "timeout", "unreachable", "refused")
_state: dict = {}
_lock = threading.Lock()


def post(target: webhooks.Target, headers: dict, body: bytes, timeout: float
         ) -> tuple[str, int | None, str | None]:
    """POST to the checked address of `target` (no redirects, `timeout` seconds to connect
    and to each read): (outcome, status code, error). The body of the answer is not read."""
    options = {"host": target.addresses[0], "port": target.port, "maxsize": 1,
               "timeout": urllib3.Timeout(connect=timeout, read=timeout), "retries": False}
    if target.scheme == "https":
        # Connected by address, verified by name (SNI and the certificate's host name).
        pool = urllib3.HTTPSConnectionPool(server_hostname=target.host,
                                           assert_hostname=target.host, **options)
    else:
        pool = urllib3.HTTPConnectionPool(**options)
    try:
        with pool:
            response = pool.urlopen("POST", target.path, body=body, redirect=False,
                                    headers={**headers, "host": target.host_header},
                                    preload_content=False, retries=False)
            response.close()
    except (urllib3.exceptions.TimeoutError, TimeoutError):
        return TIMEOUT, None, f"no answer within {timeout:g} s"
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        return UNREACHABLE, None, str(exc)
    if 200 <= response.status < 300:
        return DELIVERED, response.status, None
    return HTTP_ERROR, response.status, f"answered {response.status}"


def deliver(deliveries: Deliveries, settings: Settings, delivery_id: int,
            attempts: int) -> str | None:
    """One attempt at a claimed delivery (`attempts` made before it), recorded; its
    outcome, or None when there is nothing to do (delivered or given up already, or
    another attempt got there first)."""
    job = deliveries.job(delivery_id)
    if job is None or job.state != webhooks.PENDING or job.attempts != attempts:
        return None
    number, started, clock = attempts + 1, utcnow(), time.monotonic()
    try:
        target = webhooks.check(job.url, webhooks.AllowList(settings.webhook_allow_hosts))
    except webhooks.WebhookUnresolved as exc:  # DNS may answer again by the next attempt
        outcome, status_code, error = UNREACHABLE, None, str(exc)
    except webhooks.WebhookRefused as exc:
        outcome, status_code, error = REFUSED, None, str(exc)
    else:
        if not job.secret:
            outcome, status_code, error = REFUSED, None, "the token has no signing secret"
        else:
            body = webhooks.payload(job.event_state, job.event_data, iso(job.event_at))
            headers = webhooks.headers(job.secret, str(job.event_id), int(time.time()), body)
            outcome, status_code, error = post(target, headers, body, settings.webhook_timeout)
    seconds = time.monotonic() - clock
    state, due = _next(outcome, number, job.created_at, settings)
    deliveries.record(delivery_id, number, started, seconds, outcome, status_code, error,
                      state, due)
    log.info("webhook %s of prediction event %s, attempt %d: %s%s", delivery_id,
             job.event_id, number, outcome, f" ({error})" if error else "")
    return outcome


def _next(outcome: str, number: int, created_at, settings: Settings):
    """The delivery's state after an attempt, and when the next one is due."""
    if outcome == DELIVERED:
        return webhooks.DELIVERED, None
    if outcome == REFUSED:
        return webhooks.FAILED, None
    due = utcnow() + timedelta(seconds=webhooks.retry_delay(number, settings.webhook_retry_base))
    started = created_at if created_at.tzinfo else created_at.replace(tzinfo=due.tzinfo)
    if (due - started).total_seconds() > settings.webhook_retry_for:
        return webhooks.FAILED, None
    return webhooks.PENDING, due


def relay_once(celery: Celery, deliveries: Deliveries, settings: Settings) -> int:
    """Claim the due deliveries and send a task for each; how many were sent."""
    lease = 2 * settings.webhook_timeout + 30
    claimed = deliveries.claim_due(lease)
    for delivery_id, attempts in claimed:
        celery.send_task(WEBHOOK_TASK, args=(delivery_id, attempts), ignore_result=True)
    return len(claimed)


class Relay(threading.Thread):
    """The relay loop, as a daemon thread of a webhooks worker."""

    def __init__(self, celery: Celery, deliveries: Deliveries, settings: Settings):
        super().__init__(daemon=True, name="webhook-relay")
        self.celery, self.deliveries, self.settings = celery, deliveries, settings
        self.stopped = threading.Event()

    def run(self) -> None:
        """Pass after pass until stopped; an unreachable Redis or database waits a turn
        (a delivery claimed but not sent is claimed again when its lease ends)."""
        while not self.stopped.wait(self.settings.webhook_poll_interval):
            try:
                relay_once(self.celery, self.deliveries, self.settings)
            except (redis.RedisError, kombu.exceptions.OperationalError,
                    sqlalchemy.exc.OperationalError) as exc:
                log.warning("webhook relay pass skipped: %s", exc)


def _deliveries(settings: Settings) -> Deliveries:
    """This process's Deliveries, created on first use."""
    with _lock:
        if "deliveries" not in _state:
            _state["deliveries"] = Deliveries(Database(settings.database_url))
        return _state["deliveries"]


@shared_task(name=WEBHOOK_TASK, bind=True, ignore_result=True,
             autoretry_for=(sqlalchemy.exc.OperationalError,), retry_backoff=1,
             retry_backoff_max=30, max_retries=6)
def deliver_webhook(self, delivery_id: int, attempts: int) -> str | None:
    """Post one webhook delivery (one attempt) and record how it went."""
    settings = self.app.conf.sieve
    return deliver(_deliveries(settings), settings, delivery_id, attempts)


@worker_ready.connect
def _start_relay(sender, **_kwargs) -> None:
    """On a worker that consumes the webhooks queue, start the relay."""
    if QUEUE not in {queue.name for queue in sender.task_consumer.queues}:
        return
    settings = sender.app.conf.sieve
    relay = Relay(sender.app, _deliveries(settings), settings)
    relay.start()
    _state["relay"] = relay


@worker_shutdown.connect
def _stop_relay(**_kwargs) -> None:
    """Stop the relay with the worker."""
    if "relay" in _state:
        _state["relay"].stopped.set()
