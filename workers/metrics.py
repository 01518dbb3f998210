"""Prometheus metrics of a worker process, served at /metrics on SIEVE_WORKER_METRICS_PORT.

    sieve_worker_predictions_total{state}      final states reached (rejection rate:
                                               rejected / (rejected + done))
    sieve_worker_task_seconds{task,outcome}     task durations and outcomes
    sieve_worker_batch_size{model}              images per forward pass
    sieve_worker_forward_seconds{model}         forward pass durations
    sieve_worker_served_model{model,version}    1 for the version being served
    sieve_worker_queue_depth{queue}             messages waiting in Redis, read at scrape time
"""

import logging

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, start_http_server

from sieve.queues import QueueDepth

log = logging.getLogger(__name__)

PREDICTIONS = Counter("sieve_worker_predictions", "Predictions that reached a final state",
                      ["state"])
TASK_SECONDS = Histogram("sieve_worker_task_seconds", "Task durations", ["task", "outcome"],
                         buckets=(.002, .005, .01, .02, .05, .1, .2, .5, 1, 2, 5, 30, 300))
BATCH_SIZE = Histogram("sieve_worker_batch_size", "Images per forward pass", ["model"],
                       buckets=(1, 2, 4, 8, 16, 32, 64))
FORWARD_SECONDS = Histogram("sieve_worker_forward_seconds", "Forward pass durations",
                            ["model"], buckets=(.0005, .001, .002, .005, .01, .02, .05, .1))
SERVED = Gauge("sieve_worker_served_model", "1 for the model version being served",
               ["model", "version"])


def serving(name: str, version: str) -> None:
    """Record that `version` of model `name` is now the one served."""
    for sample in list(SERVED.collect())[0].samples:
        if sample.labels["model"] == name:
            SERVED.remove(name, sample.labels["version"])
    SERVED.labels(name, version).set(1)


def serve(port: int, broker_url: str, queues: list[str], host: str = "127.0.0.1") -> None:
    """Start the /metrics endpoint on host:port (port 0: off); a port in use is logged,
    not fatal. The default host is this machine only: set SIEVE_WORKER_METRICS_HOST to
    an address of a private network to let a Prometheus elsewhere scrape it."""
    if not port:
        return
    REGISTRY.register(QueueDepth(broker_url, queues, "sieve_worker_queue_depth"))
    try:
        start_http_server(port, addr=host)
    except OSError as exc:
        log.warning("worker metrics not served on %s:%d: %s", host, port, exc)
        return
    log.info("worker metrics at http://%s:%d/metrics", host, port)
