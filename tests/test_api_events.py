"""The event stream of a prediction: resumable, kept alive, closed after the final state."""

import io
import json
import threading

import numpy as np
import requests

from tests.images import png

PREDICTIONS = "/api/v1/predictions"


def submit(client, user) -> str:
    """A new queued prediction's id."""
    image = png(np.full((28, 28), 200, np.uint8))
    answer = client.post(PREDICTIONS, headers=user.headers,
                         data={"image": [(io.BytesIO(image), "shirt.png")]})
    return answer.get_json()["items"][0]["id"]


def parse(text: str) -> list[dict]:
    """SSE messages as dicts of their fields (comments under `comment`)."""
    messages = []
    for block in text.strip().split("\n\n"):
        fields = {}
        for line in block.splitlines():
            name, _, value = line.partition(": ") if not line.startswith(":") else (
                "comment", "", line[1:].strip())
            fields[name] = value
        messages.append(fields)
    return messages


def test_events_of_a_final_prediction_resume_after_last_event_id(client, make_user):
    user = make_user()
    pid = submit(client, user)
    client.post(f"{PREDICTIONS}/{pid}/cancel", headers=user.headers)
    stream = client.get(f"{PREDICTIONS}/{pid}/events", headers=user.headers)
    assert stream.status_code == 200 and stream.mimetype == "text/event-stream"
    events = [m for m in parse(stream.get_data(as_text=True)) if "id" in m]
    assert [m["event"] for m in events] == ["queued", "cancelled"]
    assert json.loads(events[1]["data"])["links"]["self"] == f"{PREDICTIONS}/{pid}"
    resumed = client.get(f"{PREDICTIONS}/{pid}/events",
                         headers={**user.headers, "Last-Event-ID": events[0]["id"]})
    assert [m.get("event") for m in parse(resumed.get_data(as_text=True)) if "id" in m] == [
        "cancelled"]
    bad = client.get(f"{PREDICTIONS}/{pid}/events",
                     headers={**user.headers, "Last-Event-ID": "soon"})
    assert bad.status_code == 400


def test_stream_sends_keep_alives_and_ends_at_its_time_bound(make_api_app, make_user):
    app = make_api_app(SIEVE_SSE_MAX_SECONDS=1.5, SIEVE_SSE_KEEPALIVE_SECONDS=0.3)
    user, client = make_user(app), app.test_client()
    pid = submit(client, user)
    messages = parse(client.get(f"{PREDICTIONS}/{pid}/events",
                                headers=user.headers).get_data(as_text=True))
    assert [m["event"] for m in messages if "event" in m] == ["queued"]
    assert any(m.get("comment") == "keep-alive" for m in messages)


def test_stream_pushes_a_change_as_it_happens_and_closes(live_server, client, make_user):
    user = make_user()
    pid = submit(client, user)
    received = []

    def follow():
        with requests.get(f"{live_server.url}{PREDICTIONS}/{pid}/events",
                          headers=user.headers, stream=True, timeout=15) as response:
            for line in response.iter_lines(decode_unicode=True):
                if line.startswith("event: "):
                    received.append(line.removeprefix("event: "))
                    if len(received) == 1:
                        client.post(f"{PREDICTIONS}/{pid}/cancel", headers=user.headers)

    reader = threading.Thread(target=follow)
    reader.start()
    reader.join(timeout=20)
    assert not reader.is_alive(), "the stream did not close after the final state"
    assert received == ["queued", "cancelled"]
