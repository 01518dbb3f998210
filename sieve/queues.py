"""The broker's queues, and a Prometheus collector of how many messages wait in them."""

import logging

import redis
from prometheus_client.core import GaugeMetricFamily

FILTER_QUEUE, CLASSIFY_QUEUE = "filter", "classify"
TRAINING_QUEUE, WEBHOOKS_QUEUE = "training", "webhooks"
SERVING_QUEUES = (FILTER_QUEUE, CLASSIFY_QUEUE)
QUEUES = (*SERVING_QUEUES, TRAINING_QUEUE, WEBHOOKS_QUEUE)

log = logging.getLogger(__name__)


class QueueDepth:
    """Collector: LLEN of each queue in the broker, read when Prometheus scrapes, as the
    gauge `name`{queue}."""

    def __init__(self, broker_url: str, queues: tuple[str, ...] | list[str], name: str):
        self.client = redis.Redis.from_url(broker_url, socket_timeout=2)
        self.queues, self.name = tuple(queues), name

    def collect(self):
        """One gauge sample per queue; none when Redis does not answer."""
        family = GaugeMetricFamily(self.name, "Messages waiting", labels=["queue"])
        try:
            for queue in self.queues:
                family.add_metric([queue], self.client.llen(queue))
        except redis.RedisError as exc:
            log.warning("queue depth not read: %s", exc)
        yield family
