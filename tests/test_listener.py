"""The shared pub/sub listener of a web process, against a real Redis."""

import pytest

from bench.processes import wait_for
from sieve.pubsub import Events, Listener


@pytest.fixture
def listener(redis_server):
    listening = Listener(redis_server.url, retry_after=0.2)
    yield listening
    listening.close()


def _event(pid: str, state: str, event_id: int) -> dict:
    return {"event_id": event_id, "id": pid, "state": state}


def test_followers_get_the_events_of_their_predictions_only(listener, redis_server):
    events = Events(redis_server.url)
    with listener.follow("a", "b") as both, listener.follow("b") as one:
        assert listener.subscribed.is_set()  # follow waits for the first subscription
        events.publish_many([_event("a", "filtering", 1), _event("c", "filtering", 2),
                             _event("b", "done", 3)])
        got = []
        wait_for(lambda: got.extend(both.wait(0.5)) or len(got) == 2, 10, "two events")
        assert got == [_event("a", "filtering", 1), _event("b", "done", 3)]
        assert one.wait(5) == [_event("b", "done", 3)]
        assert one.wait(0.05) == []  # nothing more, after the time asked for
        assert listener.followed() == 2
    assert listener.followed() == 0  # nothing is kept for predictions nobody follows


def test_the_listener_subscribes_again_after_redis_restarts(listener, redis_server):
    events = Events(redis_server.url)
    with listener.follow("a") as following:
        assert not following.may_have_missed()
        redis_server.restart()
        got = []
        # Events published before the listener is back are lost: followers read the record
        # now and then for that. Those published once it is back arrive.
        wait_for(lambda: events.publish(_event("a", "done", 9))
                 and got.extend(following.wait(0.3)) is None and got, 20,
                 "an event after the restart")
        assert got[0] == _event("a", "done", 9)
        # Subscribed again: what was published meanwhile may be lost (once said).
        assert following.may_have_missed()
        assert not following.may_have_missed()
