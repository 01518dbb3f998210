"""Upload, prediction, image, history and event-stream pages through the test client
(no workers: predictions stay queued unless a test moves them)."""

import io
import json
import logging
import re
import subprocess
import sys

import numpy as np
import pytest

from sieve.images import MAX_PIXELS
from sieve.models import DONE, FILTERING, QUEUED, REJECTED
from tests.fixtures_web import PASSWORD, csrf_token
from tests.images import noise, truncated_png
from web import create_app

IMAGE = noise()


def bomb_png() -> bytes:
    """A tiny PNG that claims more pixels than MAX_PIXELS (a decompression bomb)."""
    from PIL import Image

    side = int(MAX_PIXELS ** 0.5) + 10
    buffer = io.BytesIO()
    Image.new("1", (side, side)).save(buffer, "PNG")
    return buffer.getvalue()


def upload(client, *files, pipeline="filter", headers=None):
    """Post the upload form with (name, bytes) files."""
    token = csrf_token(client.get("/").get_data(as_text=True))
    data = {"csrf_token": token, "pipeline": pipeline,
            "images": [(io.BytesIO(content), name) for name, content in files]}
    return client.post("/", data=data, content_type="multipart/form-data", headers=headers)


@pytest.fixture
def user(auth):
    """A registered, signed-in user."""
    auth.register()
    return auth


def test_pages_need_a_login(web_client):
    """Every page but login and register sends strangers to the login page."""
    for path in ("/", "/history", "/predictions/abc", "/predictions/abc/events"):
        response = web_client.get(path)
        assert response.status_code == 302 and "/login" in response.headers["Location"]


def test_upload_stores_and_enqueues_then_shows_the_prediction(app, web_client, user):
    """One image: a queued prediction, stored before the redirect to its page."""
    response = upload(web_client, ("shirt.png", IMAGE), headers={"X-Request-ID": "req-42"})
    assert response.status_code == 302
    prediction_id = response.headers["Location"].rsplit("/", 1)[1]
    db = app.extensions["sieve"].db
    stored = db.get_prediction(prediction_id)
    assert stored.state == QUEUED and stored.filename == "shirt.png"
    assert stored.request_id == "req-42" and stored.pipeline == "filter"
    page = web_client.get(f"/predictions/{prediction_id}").get_data(as_text=True)
    assert "queued" in page and 'http-equiv="refresh"' in page  # the no-JS refresh
    image = web_client.get(f"/predictions/{prediction_id}/image")
    assert image.data == IMAGE and image.headers["Content-Type"] == "image/png"
    assert web_client.get(f"/predictions/{prediction_id}/status").json["state"] == QUEUED
    assert app.extensions["sieve"].events.redis.llen("filter") == 1


def test_several_images_go_to_history(app, web_client, user):
    """Several images at once: one prediction each, listed in the history, sent to the
    classifier together in one message."""
    response = upload(web_client, ("a.png", IMAGE), ("b.png", noise(2)), pipeline="classifier")
    assert response.status_code == 302 and response.headers["Location"] == "/history"
    page = web_client.get("/history").get_data(as_text=True)
    assert "a.png" in page and "b.png" in page and "2 images sent" in page
    assert app.extensions["sieve"].events.redis.llen("classify") == 1


@pytest.mark.parametrize(("content", "message"), [
    (b"", "the file is empty"),
    (b"%PDF-1.4 not an image", "not an image in a known format"),
    (truncated_png(np.full((64, 64), 7, np.uint8) + np.arange(64, dtype=np.uint8)),
     "damaged or truncated"),
    (bomb_png(), "pixels are accepted"),
])
def test_bad_uploads_are_refused_before_anything_is_stored(app, web_client, user, content,
                                                            message):
    """Empty, non-image, truncated and bomb files: a 400 naming the file, nothing stored."""
    response = upload(web_client, ("upload.png", IMAGE), ("evil.png", content))
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert "evil.png" in page and message in page
    assert app.extensions["sieve"].db.prediction_page(1)[1] == 0


def test_too_large_upload_is_a_413_page(app, web_client, user):
    """An upload over MAX_CONTENT_LENGTH gets a page that says the limit."""
    app.config["MAX_CONTENT_LENGTH"] = 1024 * 1024
    response = upload(web_client, ("big.png", b"\x89PNG" + bytes(2 * 1024 * 1024)))
    assert response.status_code == 413
    assert "larger than 1 MB" in response.get_data(as_text=True)


def test_no_file_chosen(web_client, user):
    """Sending the form without a file says what to do."""
    response = upload(web_client)
    assert response.status_code == 400
    assert "Choose at least one image" in response.get_data(as_text=True)


def test_queue_unavailable_is_a_503_page(app, web_client, user, redis_server):
    """Redis down: a 503 that says the image was not sent."""
    token = csrf_token(web_client.get("/").get_data(as_text=True))
    app.extensions["sieve"].celery.conf.broker_url = "redis://127.0.0.1:1/0"
    response = web_client.post("/", data={"csrf_token": token, "pipeline": "filter",
                                          "images": [(io.BytesIO(IMAGE), "x.png")]},
                               content_type="multipart/form-data")
    assert response.status_code == 503 and response.headers["Retry-After"]
    assert "not sent to the models" in response.get_data(as_text=True)


def test_sample_gallery(app, web_client, user):
    """Each sample is a one-click form; posting it makes a prediction of that image."""
    page = web_client.get("/").get_data(as_text=True)
    samples = re.findall(r'action="/samples/([^"]+)"', page)
    assert "ankle-boot.png" in samples and "house-not-clothing.png" in samples
    response = web_client.post("/samples/ankle-boot.png", data={
        "csrf_token": csrf_token(page), "pipeline": "classifier"})
    prediction_id = response.headers["Location"].rsplit("/", 1)[1]
    prediction = app.extensions["sieve"].db.get_prediction(prediction_id)
    assert prediction.filename == "ankle-boot.png" and prediction.pipeline == "classifier"
    assert web_client.post("/samples/../secret", data={
        "csrf_token": csrf_token(page)}).status_code == 404


def test_another_users_prediction_is_a_404(app, web_client, auth):
    """Pages, image, status and events of someone else's prediction: 404, never 403."""
    auth.register("ada@example.com")
    prediction_id = upload(web_client, ("mine.png", IMAGE)).headers["Location"].rsplit("/")[-1]
    auth.logout()
    auth.register("bob@example.com")
    for suffix in ("", "/image", "/status", "/events"):
        assert web_client.get(f"/predictions/{prediction_id}{suffix}").status_code == 404
    assert web_client.get("/predictions/does-not-exist").status_code == 404
    assert "mine.png" not in web_client.get("/history").get_data(as_text=True)


def test_history_is_paginated_newest_first(app, web_client, user):
    """Pages of HISTORY_PAGE_SIZE, newest first; past the last page is a 404."""
    app.config["HISTORY_PAGE_SIZE"] = 2
    for index in range(5):
        upload(web_client, (f"image-{index}.png", noise(index + 1)))
    first = web_client.get("/history").get_data(as_text=True)
    assert re.findall(r"image-\d", first)[:2] == ["image-4", "image-3"]
    assert "Page 1 of 3" in first and 'rel="next"' in first
    last = web_client.get("/history?page=3").get_data(as_text=True)
    assert "image-0" in last and 'rel="next"' not in last
    assert web_client.get("/history?page=4").status_code == 404


def test_event_stream_replays_and_resumes(app, web_client, user):
    """The stream replays recorded events after Last-Event-ID and ends at a final state."""
    prediction_id = upload(web_client, ("x.png", IMAGE)).headers["Location"].rsplit("/")[-1]
    db = app.extensions["sieve"].db
    db.transition(prediction_id, FILTERING, (QUEUED,))
    db.transition(prediction_id, DONE, (FILTERING,), label="Bag", probability=0.9)
    events = _events(web_client.get(f"/predictions/{prediction_id}/events").data)
    assert [e["state"] for e in events] == [QUEUED, FILTERING, DONE]
    resumed = web_client.get(f"/predictions/{prediction_id}/events",
                             headers={"Last-Event-ID": str(events[0]["event_id"])})
    assert [e["state"] for e in _events(resumed.data)] == [FILTERING, DONE]
    page = web_client.get(f"/predictions/{prediction_id}").get_data(as_text=True)
    assert "Bag" in page and "90.0%" in page and 'http-equiv="refresh"' not in page


def test_event_stream_relays_live_changes(app, web_client, user):
    """A change published while the stream is open reaches it."""
    prediction_id = upload(web_client, ("x.png", IMAGE)).headers["Location"].rsplit("/")[-1]
    services = app.extensions["sieve"]
    response = web_client.get(f"/predictions/{prediction_id}/events", buffered=False)
    chunks = iter(response.response)
    assert next(chunks).startswith(b"retry:")
    assert b"queued" in next(chunks)
    services.events.publish(services.db.transition(prediction_id, DONE, (QUEUED,)))
    assert json.loads(next(chunks).decode().split("data: ", 1)[1])["state"] == DONE
    response.close()


def _events(body: bytes) -> list[dict]:
    """The data of each event in a text/event-stream body."""
    return [json.loads(line[len("data: "):]) for line in body.decode().splitlines()
            if line.startswith("data: ")]


def test_one_json_log_line_per_request_with_its_id(app, web_client, auth):
    """Each request logs one JSON line with the request id, and never the password."""
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = logging.getLogger("sieve.web.requests")
    logger.addHandler(handler)
    try:
        response = auth.register(password=PASSWORD)
    finally:
        logger.removeHandler(handler)
    lines = [json.loads(record.getMessage()) for record in records]
    posted = [line for line in lines if line["method"] == "POST"][0]
    assert posted["path"] == "/register" and posted["status"] == 302
    assert posted["request_id"] == response.headers["X-Request-ID"]
    assert all(PASSWORD not in record.getMessage() for record in records)
    assert web_client.get("/login", headers={"X-Request-ID": "abc-1"}).headers[
        "X-Request-ID"] == "abc-1"


def test_production_needs_a_secret_key(monkeypatch):
    """SIEVE_ENV=production without SECRET_KEY: the app refuses to start."""
    monkeypatch.setenv("SIEVE_ENV", "production")
    monkeypatch.delenv("SECRET_KEY", raising=False)
    with pytest.raises(RuntimeError, match="SECRET_KEY must be set"):
        create_app()


def test_web_tier_never_imports_torch():
    """Importing web and building the app loads no torch (a fresh interpreter)."""
    code = ("import sys, web; web.create_app({'TESTING': True}); "
            "sys.exit('torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr.decode()[-2000:]


def test_rejected_prediction_says_why_once_and_can_be_classified_anyway(app, web_client,
                                                                        user):
    """A rejected prediction's page gives one message with the score and the threshold, and
    a one-click form that sends the same image to the classifier alone."""
    prediction_id = upload(web_client, ("boot.png", IMAGE)).headers["Location"].rsplit("/")[-1]
    db = app.extensions["sieve"].db
    db.transition(prediction_id, FILTERING, (QUEUED,))
    db.transition(prediction_id, REJECTED, (FILTERING,), filter_score=0.545,
                  filter_threshold=0.746)
    page = web_client.get(f"/predictions/{prediction_id}").get_data(as_text=True)
    assert page.count("0.545") == 1 and page.count("0.746") == 1
    assert page.count("Not classified") == 1 and "Filter:" not in page
    assert "<script>" not in page.split('id="result"')[1] and "onclick" not in page
    form = re.search(r'<form method="post" class="inline" id="classify-anyway"\s+'
                     r'action="([^"]+)">', page)
    assert form is not None
    response = web_client.post(form.group(1), data={"csrf_token": csrf_token(page)})
    assert response.status_code == 302
    again = db.get_prediction(response.headers["Location"].rsplit("/", 1)[1])
    assert again.id != prediction_id and again.pipeline == "classifier"
    assert again.state == QUEUED and again.filename == "boot.png"
    assert web_client.get(f"/predictions/{again.id}/image").data == IMAGE
    assert app.extensions["sieve"].events.redis.llen("classify") == 1
    # Without the form's token, or for a prediction that was not rejected: refused.
    assert web_client.post(form.group(1)).status_code == 400
    done_page = web_client.get(f"/predictions/{again.id}").get_data(as_text=True)
    assert "classify-anyway" not in done_page
    anyway = f"/predictions/{again.id}/classify-anyway"
    assert web_client.post(anyway, data={"csrf_token": csrf_token(done_page)}).status_code == 409
