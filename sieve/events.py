"""State changes pushed over Redis pub/sub, and the Redis run id that dates a queue.

The database is the record; pub/sub is only the fast path to open pages. A publish that
fails (Redis restarting) is logged and dropped: pages fall back to polling.
"""

import json
import logging
import time

import redis

log = logging.getLogger(__name__)


def channel(prediction_id: str) -> str:
    """The pub/sub channel that carries one prediction's state changes."""
    return f"sieve:predictions:{prediction_id}"


class Events:
    """Publish and subscribe to prediction state changes on Redis."""

    def __init__(self, redis_url: str):
        self.redis = redis.Redis.from_url(redis_url, socket_timeout=5,
                                          socket_connect_timeout=5)

    def publish(self, event: dict) -> bool:
        """Send one event to the prediction's channel; False when Redis is unreachable."""
        try:
            self.redis.publish(channel(event["id"]), json.dumps(event))
        except redis.RedisError as exc:
            log.warning("event %s of %s not published: %s", event.get("event_id"),
                        event["id"], exc)
            return False
        return True

    def publish_many(self, events: list[dict]) -> bool:
        """Send events to their predictions' channels in one round trip."""
        if len(events) <= 1:
            return all(self.publish(event) for event in events)
        try:
            with self.redis.pipeline(transaction=False) as pipe:
                for event in events:
                    pipe.publish(channel(event["id"]), json.dumps(event))
                pipe.execute()
        except redis.RedisError as exc:
            log.warning("%d events not published: %s", len(events), exc)
            return False
        return True

    def subscribe(self, *prediction_ids: str) -> redis.client.PubSub:
        """A subscription to predictions' channels (read with get_message)."""
        pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
        pubsub.subscribe(*(channel(pid) for pid in prediction_ids))
        return pubsub

    def subscribe_or_none(self, *prediction_ids: str) -> redis.client.PubSub | None:
        """`subscribe`, or None (logged) when Redis is unreachable: the caller then polls
        the database with `wait`, which sleeps without a subscription."""
        try:
            return self.subscribe(*prediction_ids)
        except redis.RedisError as exc:
            log.warning("following %s: polling, Redis pub/sub is unreachable: %s",
                        prediction_ids[0], exc)
            return None

    @staticmethod
    def wait(pubsub: redis.client.PubSub | None, seconds: float) -> None:
        """Until a message on the subscription, or `seconds`. A caller reads the database
        afterwards either way: a published message can be lost, a recorded event cannot.
        Without a subscription (Redis unreachable), it sleeps."""
        if pubsub is not None:
            try:
                pubsub.get_message(timeout=seconds)
                return
            except redis.RedisError:
                pass
        time.sleep(seconds)

    def broker_epoch(self) -> str:
        """The run id of the Redis server: it changes each time Redis restarts."""
        return self.redis.info("server")["run_id"]
