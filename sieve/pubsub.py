"""State changes pushed over Redis pub/sub, and the Redis run id that dates a queue.

The database is the record; pub/sub is only the fast path to open pages and waiting
requests. A publish that fails (Redis restarting) is logged and dropped: whoever waits
reads the database again. `Events` publishes (workers, web tier); `Listener` is a web
process's one shared subscription, which requests follow predictions through.
"""

import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator

import redis

log = logging.getLogger(__name__)


PREFIX = "sieve:predictions:"


def channel(prediction_id: str) -> str:
    """The pub/sub channel that carries one prediction's state changes."""
    return f"{PREFIX}{prediction_id}"


def receive(client: redis.Redis, subscribe: Callable[[redis.client.PubSub], None],
            handle: Callable[[dict], None], subscribed: threading.Event,
            stopped: threading.Event, retry_after: float, what: str,
            confirmed: Callable[[], None] = lambda: None) -> None:
    """Receive pub/sub messages and hand each to `handle` until `stopped` is set.

    `subscribe` subscribes a fresh PubSub; `subscribed` is set while Redis has confirmed
    the subscription (after `confirmed` is called). When Redis goes away, the subscription
    is made again every `retry_after` seconds; what was published meanwhile is lost."""
    pubsub = client.pubsub()
    failing = False
    while not stopped.is_set():
        try:
            if not pubsub.subscribed:
                subscribe(pubsub)
            message = pubsub.get_message(timeout=1.0)
        except redis.RedisError as exc:
            if not failing:
                log.warning("%s: Redis pub/sub is unreachable, retrying every %g s: %s",
                            what, retry_after, exc)
            failing = True
            subscribed.clear()
            pubsub.reset()
            stopped.wait(retry_after)
            continue
        if message is None:
            continue
        if message["type"] in ("message", "pmessage"):
            handle(message)
        elif message["type"] in ("subscribe", "psubscribe"):
            confirmed()
            subscribed.set()
            if failing:
                log.info("%s: subscribed again", what)
            failing = False
    pubsub.close()


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


class Following:
    """The state changes of some predictions, as a `Listener` receives them."""

    def __init__(self, listener: "Listener", prediction_ids: tuple[str, ...]):
        self.listener, self.prediction_ids = listener, prediction_ids
        self._events: list[dict] = []
        self._arrived = threading.Condition()
        self._subscription = listener.subscription()

    def may_have_missed(self) -> bool:
        """Whether events may have been lost since the last call (or since following
        began): the listener lost its subscription, or subscribed again, in between."""
        now = self.listener.subscription()
        missed, self._subscription = now != self._subscription or now == 0, now
        return missed

    def deliver(self, event: dict) -> None:
        """Called by the listener's thread with an event of one of the predictions."""
        with self._arrived:
            self._events.append(event)
            self._arrived.notify()

    def wait(self, seconds: float) -> list[dict]:
        """The events received since the last call, waiting up to `seconds` for one; an
        empty list when none came. Messages can be lost (Redis restarting): a caller
        reads the database now and then regardless."""
        with self._arrived:
            if not self._events:
                self._arrived.wait(seconds)
            events, self._events = self._events, []
        return events


class Listener:
    """One pub/sub connection per process, shared by every request that waits for
    predictions: a thread receives all prediction events (one pattern subscription) and
    hands each to whoever follows that prediction.

    A subscription per request would cost each one a new connection to Redis (redis-py
    closes a subscription's connection for good), a SUBSCRIBE and an UNSUBSCRIBE. Here a
    request only registers its interest in memory. The price is that every process
    receives every prediction's events, and ignores those nobody follows: a few tens of
    bytes per state change and process.

    When Redis goes away the thread reconnects and subscribes again, once a second;
    events published meanwhile are lost, which is why followers read the database every
    second as well."""

    PATTERN = f"{PREFIX}*"

    def __init__(self, redis_url: str, retry_after: float = 1.0):
        self.redis = redis.Redis.from_url(redis_url, socket_timeout=5,
                                          socket_connect_timeout=5)
        self.retry_after = retry_after
        self._followers: dict[str, list[Following]] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pid = 0
        self.subscribed = threading.Event()
        self.stopped = threading.Event()
        self._subscriptions = 0  # confirmed subscriptions so far (one more per reconnection)

    def subscription(self) -> int:
        """The number of the current subscription; 0 while there is none."""
        return self._subscriptions if self.subscribed.is_set() else 0

    @contextlib.contextmanager
    def follow(self, *prediction_ids: str) -> Iterator[Following]:
        """Receive the predictions' events from now on, until the block ends. Waits up to a
        second for the listener to be subscribed when it has only just started, so that a
        caller that reads the database next misses no change in between."""
        self._start()
        following = Following(self, prediction_ids)
        with self._lock:
            for pid in prediction_ids:
                self._followers.setdefault(pid, []).append(following)
        try:
            yield following
        finally:
            with self._lock:
                for pid in prediction_ids:
                    others = [f for f in self._followers.get(pid, ()) if f is not following]
                    if others:
                        self._followers[pid] = others
                    else:
                        self._followers.pop(pid, None)

    def followed(self) -> int:
        """How many predictions someone in this process follows."""
        with self._lock:
            return len(self._followers)

    def _start(self) -> None:
        """Start the thread in this process (again after a fork, which does not copy it);
        in its first second, wait for it to be subscribed."""
        with self._lock:
            if self._thread is None or self._pid != os.getpid():
                self._pid, self._started_at = os.getpid(), time.monotonic()
                self.subscribed = threading.Event()
                self._thread = threading.Thread(target=self._run, name="sieve-listener",
                                                daemon=True)
                self._thread.start()
            left = self._started_at + 1.0 - time.monotonic()
        if left > 0:
            self.subscribed.wait(left)

    def close(self) -> None:
        """Stop the thread: it ends within a second, with its connection."""
        self.stopped.set()

    def _run(self) -> None:
        """Receive until stopped; subscribed again after each failure."""
        receive(self.redis, lambda pubsub: pubsub.psubscribe(self.PATTERN), self._dispatch,
                self.subscribed, self.stopped, self.retry_after, "prediction events",
                confirmed=self._confirmed)

    def _confirmed(self) -> None:
        """Count a confirmed subscription: Redis delivers every event published from now on."""
        self._subscriptions += 1

    def _dispatch(self, message: dict) -> None:
        """Hand an event to the followers of its prediction, if there are any."""
        pid = message["channel"][len(PREFIX):].decode()
        with self._lock:
            followers = list(self._followers.get(pid, ()))
        if followers:
            event = json.loads(message["data"])
            for following in followers:
                following.deliver(event)
