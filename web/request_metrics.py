"""Prometheus metrics of the web tier at /metrics.

    sieve_web_requests_total{method,endpoint,status}   requests answered
    sieve_web_request_seconds{endpoint}                request latency
    sieve_web_queue_depth{queue}                       messages waiting, read at scrape time

The workers serve the rest (task durations and outcomes, the filter's rejections, the
model versions being served) on their own port; see docs/operations.md. Under gunicorn
with several worker processes, set PROMETHEUS_MULTIPROC_DIR to an empty folder they all
share: /metrics then adds up the counts of every process.

/metrics is not public. With SIEVE_METRICS_TOKEN set it answers requests that present
that token (`Authorization: Bearer <token>`, Prometheus' `authorization` setting);
without it, only direct requests from this host (a loopback address, no proxy's
X-Forwarded-For).
"""

import hmac
import ipaddress
import os
import time

from flask import Flask, Response, abort, current_app, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)

from sieve.queues import QUEUES, QueueDepth

REQUESTS = Counter("sieve_web_requests", "Requests answered", ["method", "endpoint", "status"])
LATENCY = Histogram("sieve_web_request_seconds", "Request latency", ["endpoint"],
                    buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30))


def _start() -> None:
    """Note when the request began."""
    g.metrics_started = time.perf_counter()


def _finish(response):
    """Count the request and observe its latency."""
    endpoint = request.endpoint or "unknown"
    REQUESTS.labels(request.method, endpoint, str(response.status_code)).inc()
    started = g.get("metrics_started")
    if started is not None:
        LATENCY.labels(endpoint).observe(time.perf_counter() - started)
    return response


def _process_metrics() -> bytes:
    """This process's metrics, or all processes' under PROMETHEUS_MULTIPROC_DIR."""
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return generate_latest(REGISTRY)
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return generate_latest(registry)


def _allowed() -> bool:
    """Whether this request may read /metrics (see the module's docstring)."""
    token = current_app.config.get("METRICS_TOKEN")
    if token:
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(),
                                                                  token.encode())
    try:
        local = ipaddress.ip_address(request.remote_addr or "").is_loopback
    except ValueError:
        local = False
    return local and "X-Forwarded-For" not in request.headers


def init_app(app: Flask) -> None:
    """Count every request and serve /metrics."""
    app.before_request(_start)
    app.after_request(_finish)
    queues = CollectorRegistry()
    queues.register(QueueDepth(app.extensions["sieve"].settings.broker_url, QUEUES,
                               "sieve_web_queue_depth"))

    @app.get("/metrics")
    def metrics():
        """The metrics in Prometheus' text format, to those allowed to read them."""
        if not _allowed():
            abort(403, "The metrics are not public: set SIEVE_METRICS_TOKEN and send it as "
                  "a bearer token (see docs/security.md).")
        return Response(_process_metrics() + generate_latest(queues),
                        content_type=CONTENT_TYPE_LATEST)
