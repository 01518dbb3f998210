"""Submitting, reading, listing and cancelling predictions through the API (no worker:
predictions stay queued unless a test moves them)."""

import io
import threading
import time

import numpy as np
import pytest
from PIL import Image

from sieve.database import Database
from sieve.models import DONE, FILTERING, QUEUED
from tests.images import noise, png, truncated_png

PREDICTIONS = "/api/v1/predictions"
SHIRT = png(np.full((28, 28), 200, np.uint8))


def upload(*images: bytes, **fields) -> dict:
    """A multipart body with the images in fields named `image`."""
    return {"image": [(io.BytesIO(data), f"{i}.png") for i, data in enumerate(images)],
            **fields}


def bomb() -> bytes:
    """A small PNG that decodes to more pixels than the decoder accepts."""
    buffer = io.BytesIO()
    Image.new("1", (7000, 7000)).save(buffer, "PNG")
    return buffer.getvalue()


def problem_of(response, status: int) -> dict:
    """The problem-details body of an error answer, after checking its status and type."""
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.content_type == "application/problem+json"
    body = response.get_json()
    assert body["status"] == status and body["title"] and body["detail"]
    return body


def test_submit_answers_202_with_location_and_retry_after(database_url, make_api_app,
                                                          make_user):
    app = make_api_app(database_url)
    user, client = make_user(app), app.test_client()
    answer = client.post(PREDICTIONS, headers=user.headers, data=upload(SHIRT, noise()))
    assert answer.status_code == 202
    items = answer.get_json()["items"]
    assert [p["state"] for p in items] == [QUEUED, QUEUED]
    assert answer.headers["Location"] == f"{PREDICTIONS}/{items[0]['id']}"
    assert int(answer.headers["Retry-After"]) >= 1
    one = client.get(answer.headers["Location"], headers=user.headers).get_json()
    assert one["id"] == items[0]["id"] and one["pipeline"] == "filter"
    listed = client.get(PREDICTIONS, headers=user.headers).get_json()
    assert {p["id"] for p in listed["items"]} == {p["id"] for p in items}


@pytest.mark.parametrize(("body", "content_type", "status"), [
    ({}, "multipart/form-data", 400),                       # no image field
    ({"image": "text, not a file"}, "multipart/form-data", 400),
    (None, "application/json", 415),                        # not multipart
    (upload(b"%PDF-1.4 not an image"), None, 415),
    (upload(b""), None, 422),                               # empty
    (upload(truncated_png(np.random.default_rng(0).integers(0, 256, (64, 64), np.uint8))),
     None, 422),
    (upload(bomb()), None, 413),                            # decompression bomb
    (upload(SHIRT, pipeline="both"), None, 422),            # unknown pipeline
    (upload(*[SHIRT] * 17), None, 413),                     # more than SIEVE_MAX_IMAGES
])
def test_submit_refuses_bad_uploads(client, make_user, body, content_type, status):
    kwargs = {"json": {"image": "x"}} if body is None else {"data": body}
    if content_type and body is not None:
        kwargs["content_type"] = content_type
    answer = client.post(PREDICTIONS, headers=make_user().headers, **kwargs)
    problem_of(answer, status)


def test_submit_refuses_an_image_over_the_byte_bound(make_api_app, make_user):
    app = make_api_app(SIEVE_MAX_IMAGE_BYTES=100)
    answer = app.test_client().post(PREDICTIONS, headers=make_user(app).headers,
                                    data=upload(noise(size=64)))
    assert "larger than 100 bytes" in problem_of(answer, 413)["detail"]


def test_pipeline_classifier_is_recorded(client, make_user):
    answer = client.post(PREDICTIONS, headers=make_user().headers,
                         data=upload(SHIRT, pipeline="classifier"))
    assert answer.get_json()["items"][0]["pipeline"] == "classifier"


def test_idempotency_key_replays_the_first_answer(database_url, make_api_app, make_user):
    app = make_api_app(database_url)
    user, client = make_user(app), app.test_client()
    headers = {**user.headers, "Idempotency-Key": "order-42"}
    first = client.post(PREDICTIONS, headers=headers, data=upload(SHIRT))
    again = client.post(PREDICTIONS, headers=headers, data=upload(SHIRT))
    assert first.status_code == again.status_code == 202
    assert again.get_json() == first.get_json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert len(client.get(PREDICTIONS, headers=user.headers).get_json()["items"]) == 1
    other = client.post(PREDICTIONS, headers=headers, data=upload(noise()))
    assert "different request" in problem_of(other, 422)["detail"]
    # The same key of another user is another key.
    assert client.post(PREDICTIONS, headers={**make_user(app).headers, "Idempotency-Key":
                                             "order-42"}, data=upload(SHIRT)).status_code == 202


def test_idempotency_key_in_progress_is_409(api_app, client, make_user):
    user = make_user()
    with api_app.app_context():
        from web.api.uploads import fingerprint
        from web.uploads import Upload
        key_print = fingerprint([Upload(SHIRT, "image/png", "0.png")], "filter")
    Database(api_app.config["DATABASE_URL"]).claim_idempotency_key(user.id, "k", key_print)
    answer = client.post(PREDICTIONS, headers={**user.headers, "Idempotency-Key": "k"},
                         data=upload(SHIRT))
    problem_of(answer, 409)
    problem_of(client.post(PREDICTIONS, headers={**user.headers, "Idempotency-Key": "x" * 256},
                           data=upload(SHIRT)), 400)


def test_backpressure_answers_503_with_retry_after(make_api_app, make_user):
    app = make_api_app(SIEVE_MAX_QUEUE_DEPTH=2, SIEVE_BACKPRESSURE_RETRY_AFTER=7)
    user, client = make_user(app), app.test_client()
    for _ in range(2):  # no worker: two messages wait
        assert client.post(PREDICTIONS, headers=user.headers,
                           data=upload(SHIRT, SHIRT)).status_code == 202
    full = client.post(PREDICTIONS, headers=user.headers, data=upload(SHIRT))
    assert problem_of(full, 503)["queue_depth"] == 2
    assert full.headers["Retry-After"] == "7"


def test_unreachable_queue_answers_503(make_api_app, make_user):
    from bench.processes import free_port

    app = make_api_app(REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    answer = app.test_client().post(PREDICTIONS, headers=make_user(app).headers,
                                    data=upload(SHIRT))
    assert problem_of(answer, 503)["detail"].startswith("the task queue is unreachable")
    assert answer.headers["Retry-After"]


def test_list_pages_with_a_cursor_and_filters_by_state(database_url, make_api_app, make_user):
    app = make_api_app(database_url)
    user, client = make_user(app), app.test_client()
    ids = [client.post(PREDICTIONS, headers=user.headers, data=upload(SHIRT))
           .get_json()["items"][0]["id"] for _ in range(5)]
    seen, cursor = [], None
    while True:
        page = client.get(PREDICTIONS, headers=user.headers,
                          query_string={"limit": 2, **({"cursor": cursor} if cursor else {})})
        body = page.get_json()
        seen += [p["id"] for p in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == ids[::-1]
    Database(database_url).transition(ids[0], FILTERING, (QUEUED,))
    Database(database_url).transition(ids[0], DONE, (FILTERING,), label="Shirt")
    done = client.get(PREDICTIONS, headers=user.headers, query_string={"state": DONE})
    assert [p["id"] for p in done.get_json()["items"]] == [ids[0]]


@pytest.mark.parametrize("query", [{"limit": "0"}, {"limit": "many"}, {"limit": "101"},
                                   {"state": "lost"}, {"cursor": "not-a-prediction"}])
def test_list_refuses_bad_parameters(client, make_user, query):
    problem_of(client.get(PREDICTIONS, headers=make_user().headers, query_string=query), 400)


def test_cancel_then_409_once_final(database_url, make_api_app, make_user):
    app = make_api_app(database_url)
    user, client = make_user(app), app.test_client()
    pid = client.post(PREDICTIONS, headers=user.headers,
                      data=upload(SHIRT)).get_json()["items"][0]["id"]
    cancelled = client.post(f"{PREDICTIONS}/{pid}/cancel", headers=user.headers)
    assert cancelled.status_code == 200 and cancelled.get_json()["state"] == "cancelled"
    again = client.post(f"{PREDICTIONS}/{pid}/cancel", headers=user.headers)
    assert problem_of(again, 409)["state"] == "cancelled"


def test_another_users_prediction_is_404(client, make_user):
    owner, stranger = make_user(), make_user()
    pid = client.post(PREDICTIONS, headers=owner.headers,
                      data=upload(SHIRT)).get_json()["items"][0]["id"]
    for method, path in (("get", f"{PREDICTIONS}/{pid}"),
                         ("post", f"{PREDICTIONS}/{pid}/cancel"),
                         ("get", f"{PREDICTIONS}/{pid}/events")):
        problem_of(getattr(client, method)(path, headers=stranger.headers), 404)
    assert client.get(PREDICTIONS, headers=stranger.headers).get_json()["items"] == []
    assert client.get(f"{PREDICTIONS}/{pid}", headers=owner.headers).status_code == 200
    problem_of(client.get(f"{PREDICTIONS}/nope", headers=owner.headers), 404)


def test_wait_answers_once_the_prediction_is_final(api_app, client, make_user):
    user = make_user()
    pid = client.post(PREDICTIONS, headers=user.headers,
                      data=upload(SHIRT)).get_json()["items"][0]["id"]
    canceller = threading.Timer(0.3, lambda: api_app.test_client().post(
        f"{PREDICTIONS}/{pid}/cancel", headers=user.headers))
    canceller.start()
    started = time.monotonic()
    answer = client.get(f"{PREDICTIONS}/{pid}", headers=user.headers,
                        query_string={"wait": "20"})
    canceller.join(timeout=10)
    assert answer.status_code == 200 and answer.get_json()["state"] == "cancelled"
    assert time.monotonic() - started < 15  # the change ended the wait, not its bound
    again = client.get(f"{PREDICTIONS}/{pid}", headers=user.headers,
                       query_string={"wait": "20"})
    assert again.get_json()["state"] == "cancelled"  # final already: answered at once


def test_wait_answers_the_unfinished_state_when_its_seconds_run_out(client, make_user):
    user = make_user()
    pid = client.post(PREDICTIONS, headers=user.headers,
                      data=upload(SHIRT)).get_json()["items"][0]["id"]
    started = time.monotonic()
    answer = client.get(f"{PREDICTIONS}/{pid}", headers=user.headers,
                        query_string={"wait": "0.6"})
    assert answer.status_code == 200 and answer.get_json()["state"] == QUEUED
    assert time.monotonic() - started >= 0.6


@pytest.mark.parametrize("wait", ["-1", "soon", "nan", "31"])
def test_wait_refuses_what_is_not_a_number_of_seconds_in_bounds(client, make_user, wait):
    user = make_user()
    pid = client.post(PREDICTIONS, headers=user.headers,
                      data=upload(SHIRT)).get_json()["items"][0]["id"]
    problem_of(client.get(f"{PREDICTIONS}/{pid}", headers=user.headers,
                          query_string={"wait": wait}), 400)


def test_submit_with_wait_answers_202_and_the_state_so_far_when_its_seconds_run_out(
        client, make_user):
    user = make_user()
    started = time.monotonic()
    answer = client.post(PREDICTIONS, headers=user.headers, data=upload(SHIRT),
                         query_string={"wait": "0.6"})
    assert time.monotonic() - started >= 0.6
    assert answer.status_code == 202 and int(answer.headers["Retry-After"]) >= 1
    assert [p["state"] for p in answer.get_json()["items"]] == [QUEUED]


def test_submit_with_a_wrong_wait_stores_nothing(api_app, client, make_user):
    user = make_user()
    problem_of(client.post(PREDICTIONS, headers=user.headers, data=upload(SHIRT),
                           query_string={"wait": "31"}), 400)
    assert client.get(PREDICTIONS, headers=user.headers).get_json()["items"] == []


def test_unreachable_database_answers_503_with_retry_after(make_api_app, make_user):
    from bench.processes import free_port

    app = make_api_app()
    user = make_user(app)
    down = make_api_app(f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/sieve")
    client = down.test_client()
    answer = client.post(PREDICTIONS, headers=user.headers, data=upload(SHIRT))
    assert problem_of(answer, 503)["detail"].startswith("the database is unreachable")
    assert answer.headers["Retry-After"] == "5"


def test_unreachable_database_on_a_page_is_a_503_page(make_api_app):
    from sqlalchemy.exc import OperationalError

    app = make_api_app()

    @app.get("/needs-the-database")
    def needs_the_database():
        raise OperationalError("SELECT 1", {}, ConnectionRefusedError("connection refused"))

    page = app.test_client().get("/needs-the-database")
    assert page.status_code == 503 and page.headers["Retry-After"] == "5"
    assert "database did not answer" in page.get_data(as_text=True)


def test_predictions_named_by_id_come_in_that_order(client, make_user):
    owner, stranger = make_user(), make_user()
    ids = [item["id"] for item in client.post(PREDICTIONS, headers=owner.headers, data=upload(
        SHIRT, SHIRT, SHIRT)).get_json()["items"]]
    chosen = [ids[2], ids[0]]
    page = client.get(PREDICTIONS, headers=owner.headers, query_string={"id": chosen})
    assert [item["id"] for item in page.get_json()["items"]] == chosen
    assert page.get_json()["next_cursor"] is None
    problem_of(client.get(PREDICTIONS, headers=stranger.headers,
                          query_string={"id": chosen}), 404)
    problem_of(client.get(PREDICTIONS, headers=owner.headers,
                          query_string={"id": ids[0], "state": "queued"}), 400)
    problem_of(client.get(PREDICTIONS, headers=owner.headers,
                          query_string={"id": ["x"] * 101}), 400)
    problem_of(client.get(PREDICTIONS, headers=owner.headers, query_string={"wait": "1"}), 400)


def test_wait_on_predictions_named_by_id_answers_once_all_are_final(api_app, client,
                                                                    make_user):
    user = make_user()
    ids = [item["id"] for item in client.post(PREDICTIONS, headers=user.headers, data=upload(
        SHIRT, SHIRT)).get_json()["items"]]

    def cancel_one_by_one():
        for pid in ids:
            time.sleep(0.3)
            api_app.test_client().post(f"{PREDICTIONS}/{pid}/cancel", headers=user.headers)

    canceller = threading.Thread(target=cancel_one_by_one)
    canceller.start()
    started = time.monotonic()
    answer = client.get(PREDICTIONS, headers=user.headers,
                        query_string={"id": ids, "wait": "20"})
    canceller.join(timeout=10)
    assert [item["state"] for item in answer.get_json()["items"]] == ["cancelled"] * 2
    assert time.monotonic() - started < 15
