"""The Database class on SQLite and PostgreSQL: images, predictions, state changes."""

import threading

import pytest

from sieve.database import Database
from sieve.migrate import is_current
from sieve.models import CANCELLED, CLASSIFYING, DONE, FILTERING, QUEUED


@pytest.fixture
def database(database_url):
    """A Database on a freshly migrated SQLite file or PostgreSQL database."""
    db = Database(database_url)
    yield db
    db.dispose()


def test_migrations_reach_the_newest_schema(database_url):
    assert is_current(database_url)


def test_images_round_trip(database):
    prediction = database.create_prediction(b"\x89PNG bytes", "image/png", "filter")
    assert database.get_image(prediction.image_key) == b"\x89PNG bytes"
    assert database.work_item(prediction.id).data == b"\x89PNG bytes"
    assert database.get_image("no-such-key") is None
    assert database.work_item("no-such-id") is None


def test_a_new_prediction_is_queued_with_one_event(database):
    prediction = database.create_prediction(b"x", "image/png", "filter", "shirt.png",
                                            request_id="r1")
    stored = database.get_prediction(prediction.id)
    assert stored.state == QUEUED and stored.filename == "shirt.png"
    events = database.events(prediction.id)
    assert [e["state"] for e in events] == [QUEUED]
    assert events[0]["id"] == prediction.id and events[0]["event_id"] > 0


def test_unknown_pipeline_is_refused(database):
    with pytest.raises(ValueError, match="unknown pipeline"):
        database.create_prediction(b"x", "image/png", "nonsense")


def test_transitions_are_conditional_and_numbered(database):
    pid = database.create_prediction(b"x", "image/png", "filter").id
    assert database.transition(pid, FILTERING, (QUEUED,))["state"] == FILTERING
    assert database.transition(pid, FILTERING, (QUEUED,)) is None  # not from here any more
    done = database.transition(pid, DONE, (FILTERING,), label="Shirt", top_k=[{"class": "Shirt"}])
    assert done["label"] == "Shirt" and done["finished_at"] is not None
    assert database.transition(pid, CANCELLED, (QUEUED, FILTERING, CLASSIFYING)) is None
    events = database.events(pid)
    assert [e["state"] for e in events] == [QUEUED, FILTERING, DONE]
    assert [e["event_id"] for e in events] == sorted(e["event_id"] for e in events)
    assert database.events(pid, after=events[1]["event_id"]) == events[2:]


def test_racing_transitions_have_one_winner(database):
    """Eight threads try the same change: exactly one succeeds, one event is recorded."""
    pid = database.create_prediction(b"x", "image/png", "classifier").id
    database.transition(pid, CLASSIFYING, (QUEUED,))
    results = []
    barrier = threading.Barrier(8)

    def finish():
        barrier.wait(timeout=10)
        results.append(database.transition(pid, DONE, (CLASSIFYING,), label="Bag"))

    threads = [threading.Thread(target=finish) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sum(r is not None for r in results) == 1
    assert [e["state"] for e in database.events(pid)].count(DONE) == 1


def test_unfinished_outside_finds_what_another_redis_run_held(database):
    old = database.create_prediction(b"x", "image/png", "filter").id
    database.mark_enqueued(old, "run-a")
    database.create_prediction(b"x", "image/png", "filter", redis_run_id="run-b")
    finished = database.create_prediction(b"x", "image/png", "classifier").id
    database.mark_enqueued(finished, "run-a")
    database.transition(finished, CANCELLED, (QUEUED,))
    assert database.unfinished_outside("run-b", idle_for=3600) == []  # too recent
    assert [p.id for p in database.unfinished_outside("run-b", idle_for=0)] == [old]


def test_predictions_are_counted(database):
    assert database.count_predictions() == 0
    database.create_prediction(b"x", "image/png", "filter")
    database.create_prediction(b"y", "image/png", "classifier")
    assert database.count_predictions() == 2


def test_a_token_is_found_by_its_hash_with_its_owner(database):
    owner = database.create_user("owner@example.org", "hash", is_admin=True)
    other = database.create_user("other@example.org", "hash")
    database.create_api_token(other.id, "theirs", "b" * 64, "sieve_bbbbbb", ["predict"])
    made = database.create_api_token(owner.id, "mine", "a" * 64, "sieve_aaaaaa",
                                     ["predict", "train"])
    token, user = database.api_token_owner("a" * 64)
    assert (token.id, token.user_id, token.name, token.scopes, token.revoked_at) == (
        made.id, owner.id, "mine", ["predict", "train"], None)
    assert (user.id, user.email, user.is_admin) == (owner.id, "owner@example.org", True)
    assert database.api_token_owner("c" * 64) is None
    assert database.revoke_api_token(owner.id, made.id)
    assert database.api_token_owner("a" * 64)[0].revoked_at is not None
    assert database.api_token_owner("b" * 64)[1].email == "other@example.org"
