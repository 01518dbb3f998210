"""Webhooks: signed as Standard Webhooks says, refused for unsafe URLs, and delivered by the
webhooks worker to a real receiver on loopback (which SIEVE_WEBHOOK_ALLOW_HOSTS allows)."""

import base64
import hashlib
import hmac
import io
import json
import runpy
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from bench.processes import wait_for
from sieve import webhooks
from sieve.config import ROOT
from web.api.tokens import create_token
from web.users import create_user

LOOPBACK = "127.0.0.1"
# The receiver of docs/api.md, whose verification the deliveries must pass too.
DOCUMENTED = runpy.run_path(str(ROOT / "docs" / "examples" / "webhook_receiver.py"))


def verify(secret: str, headers: dict, body: bytes) -> bool:
    """The published algorithm, written out here: HMAC-SHA256 of id.timestamp.body under
    the base64 key after `whsec_`, compared with each `v1,` signature of the header."""
    key = base64.b64decode(secret.split("_", 1)[1])
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return any(hmac.compare_digest(expected, sig.split(",", 1)[1])
               for sig in headers["webhook-signature"].split() if sig.startswith("v1,"))


def test_signature_matches_the_specifications_example():
    # The example of the Standard Webhooks reference libraries.
    assert webhooks.sign("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                         "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330,
                         b'{"test": 2432232314}') == (
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")


def test_the_documented_receiver_refuses_a_wrong_or_stale_signature():
    secret, body = webhooks.new_secret(), b'{"data":{}}'
    signed = webhooks.headers(secret, "7", int(time.time()), body)
    assert DOCUMENTED["verify"](secret, signed, body) == {"data": {}}
    with pytest.raises(ValueError, match="no signature"):
        DOCUMENTED["verify"](secret, signed, body + b" ")
    with pytest.raises(ValueError, match="timestamp"):
        DOCUMENTED["verify"](secret, signed, body, now=time.time() + 3600)


def test_new_secrets_are_in_the_whsec_form_and_verify():
    secret = webhooks.new_secret()
    assert secret.startswith("whsec_") and len(base64.b64decode(secret[6:])) == 24
    body = b'{"a":1}'
    assert verify(secret, webhooks.headers(secret, "42", 1700000000, body), body)
    assert not verify(webhooks.new_secret(), webhooks.headers(secret, "42", 1, body), body)


@pytest.mark.parametrize("url", [
    "https://127.0.0.1/hook", "https://localhost:8443/", "https://10.0.0.7/",
    "https://192.168.1.1/", "https://169.254.169.254/latest/meta-data",
    "https://[::1]/", "https://[fe80::1]/", "https://[::ffff:10.0.0.1]/",
    "http://93.184.215.14/", "ftp://93.184.215.14/", "https://user:pw@93.184.215.14/",
    "not a url", "https:///nohost"])
def test_unsafe_urls_are_refused(url):
    with pytest.raises(webhooks.WebhookRefused):
        webhooks.check(url, webhooks.AllowList([]))


def test_the_allow_list_admits_hosts_by_name_or_network():
    target = webhooks.check("https://93.184.215.14:8443/a?b=1", webhooks.AllowList([]))
    assert (target.addresses, target.path, target.host_header) == (
        ("93.184.215.14",), "/a?b=1", "93.184.215.14:8443")
    assert webhooks.check("http://localhost:9/", webhooks.AllowList(["localhost"]))
    assert webhooks.check("http://127.0.0.1:9/", webhooks.AllowList(["127.0.0.0/8"]))
    with pytest.raises(webhooks.WebhookRefused):
        webhooks.check("https://10.0.0.7/", webhooks.AllowList(["127.0.0.0/8"]))


def _submit(client, headers, data: bytes, count: int = 1, **form):
    """POST /predictions with `count` copies of an image and extra form fields."""
    files = [("image", (io.BytesIO(data), f"{i}.png")) for i in range(count)]
    return client.post("/api/v1/predictions", headers=headers,
                       data={"image": [f[1] for f in files], **form},
                       content_type="multipart/form-data")


def _hook_user(app):
    """(headers, webhook secret) of a new user's token."""
    with app.app_context():
        user = create_user(f"hooks{time.monotonic_ns()}@example.com", "a long enough password")
        token, record = create_token(user.id, "hooks")
    return {"Authorization": f"Bearer {token}"}, record.webhook_secret


def test_a_private_address_is_refused_at_submission_unless_allowed(make_api_app, monkeypatch,
                                                                    known_images):
    image = known_images[0][0]
    app = make_api_app()
    headers, _ = _hook_user(app)
    refused = _submit(app.test_client(), headers, image, webhook="https://10.1.2.3/hook")
    assert refused.status_code == 422
    assert "10.1.2.3" in refused.json["detail"]
    assert "SIEVE_WEBHOOK_ALLOW_HOSTS" in refused.json["detail"]
    bad_events = _submit(app.test_client(), headers, image,
                         webhook="https://93.184.215.14/", webhook_events="some")
    assert bad_events.status_code == 422

    monkeypatch.setenv("SIEVE_WEBHOOK_ALLOW_HOSTS", "10.0.0.0/8")
    allowed_app = make_api_app()
    headers, _ = _hook_user(allowed_app)
    accepted = _submit(allowed_app.test_client(), headers, image,
                       webhook="http://10.1.2.3/hook")
    assert accepted.status_code == 202, accepted.json
    pid = accepted.json["items"][0]["id"]
    hook = allowed_app.test_client().get(f"/api/v1/predictions/{pid}/webhook",
                                         headers=headers)
    assert hook.json == {"url": "http://10.1.2.3/hook", "events": "final", "deliveries": []}


class Receiver:
    """A webhook receiver over real HTTP on loopback: answers with the next of `statuses`
    (the last one again once they run out), or holds every request while `hold` is set."""

    def __init__(self, statuses=(200,)):
        self.statuses, self.received = list(statuses), []
        self.hold = threading.Event()
        self.release = threading.Event()
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with receiver.lock:
                    receiver.received.append(({k.lower(): v for k, v in self.headers.items()},
                                              body))
                    status = (receiver.statuses.pop(0) if len(receiver.statuses) > 1
                              else receiver.statuses[0])
                if receiver.hold.is_set():
                    receiver.release.wait(60)
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *_args):
                pass

        self.server = ThreadingHTTPServer((LOOPBACK, 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://{LOOPBACK}:{self.server.server_port}/hooks/sieve"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "Receiver":
        self.thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()

    def messages(self) -> list[tuple[dict, bytes]]:
        with self.lock:
            return list(self.received)


HOOK_ENV = {"SIEVE_WEBHOOK_ALLOW_HOSTS": LOOPBACK, "SIEVE_WEBHOOK_POLL_INTERVAL": "0.1",
            "SIEVE_WEBHOOK_TIMEOUT": "60",
            "SIEVE_WEBHOOK_RETRY_BASE": "0.2"}


@pytest.fixture
def hooked(make_api_app, start_worker, monkeypatch):
    """(app, headers, secret): the app allowing loopback webhooks, a serving worker and a
    webhooks worker, started with the documented queues."""
    for name, value in HOOK_ENV.items():
        monkeypatch.setenv(name, value)
    app = make_api_app()
    start_worker()
    start_worker("hooks", queues="webhooks", **HOOK_ENV)
    headers, secret = _hook_user(app)
    return app, headers, secret


def _final(client, headers, pids: list[str]) -> list[dict]:
    """The predictions once final (a long poll of at most 60 s)."""
    answer = client.get("/api/v1/predictions", headers=headers,
                        query_string=[("wait", 30)] + [("id", pid) for pid in pids])
    items = answer.json["items"]
    assert all(p["state"] in ("done", "rejected", "failed", "cancelled") for p in items), items
    return items


@pytest.mark.slow
def test_each_final_event_reaches_a_receiver_once_signed(hooked, known_images):
    app, headers, secret = hooked
    client = app.test_client()
    (image, label) = known_images[0]
    with Receiver() as receiver:
        made = _submit(client, headers, image, count=2, webhook=receiver.url)
        assert made.status_code == 202, made.json
        every = _submit(client, headers, image, webhook=receiver.url, webhook_events="all")
        pids = [p["id"] for p in made.json["items"]]
        every_id = every.json["items"][0]["id"]
        _final(client, headers, [*pids, every_id])
        # 2 final events, and filtering, classifying and done of the third.
        wait_for(lambda: len(receiver.messages()) >= 5, 60, "five webhook messages")
        time.sleep(1.0)  # room for a duplicate to show up
        messages = receiver.messages()
    assert len(messages) == 5
    ids = [h["webhook-id"] for h, _ in messages]
    assert len(set(ids)) == 5  # each event once
    for headers_, body in messages:
        assert verify(secret, headers_, body)
        assert DOCUMENTED["verify"](secret, headers_, body)["data"]["id"]
        assert abs(int(headers_["webhook-timestamp"]) - time.time()) < 300
    bodies = {json.loads(body)["data"]["id"]: [] for _, body in messages}
    for _, body in messages:
        message = json.loads(body)
        bodies[message["data"]["id"]].append(message["type"])
    for pid in pids:
        assert bodies[pid] == ["prediction.done"]
    assert sorted(bodies[every_id]) == sorted(
        ["prediction.filtering", "prediction.classifying", "prediction.done"])
    done = [json.loads(b) for _, b in messages if json.loads(b)["data"]["id"] == pids[0]][0]
    assert done["data"]["label"] == label and done["data"]["state"] == "done"
    # The webhook-id is the number of the event, as the event stream numbers it.
    events = app.extensions["sieve"].db.events(pids[0])
    assert str(events[-1]["event_id"]) in ids

    record = client.get(f"/api/v1/predictions/{pids[0]}/webhook", headers=headers).json
    assert record["events"] == "final" and len(record["deliveries"]) == 1
    delivery = record["deliveries"][0]
    assert delivery["state"] == "delivered" and delivery["type"] == "prediction.done"
    assert [(a["number"], a["outcome"], a["status_code"]) for a in delivery["attempts"]] == [
        (1, "delivered", 200)]


@pytest.mark.slow
def test_a_receiver_that_fails_twice_gets_the_event_on_the_third_attempt(hooked,
                                                                         known_images):
    app, headers, secret = hooked
    client = app.test_client()
    with Receiver(statuses=(500, 500, 200)) as receiver:
        pid = _submit(client, headers, known_images[0][0],
                      webhook=receiver.url).json["items"][0]["id"]
        _final(client, headers, [pid])

        def delivered():
            record = client.get(f"/api/v1/predictions/{pid}/webhook", headers=headers).json
            return record["deliveries"] and record["deliveries"][0]["state"] == "delivered"

        wait_for(delivered, 60, "the third attempt to succeed", interval=0.2)
        messages = receiver.messages()
    delivery = client.get(f"/api/v1/predictions/{pid}/webhook",
                          headers=headers).json["deliveries"][0]
    assert [(a["number"], a["outcome"], a["status_code"]) for a in delivery["attempts"]] == [
        (1, "http_error", 500), (2, "http_error", 500), (3, "delivered", 200)]
    assert len(messages) == 3
    assert len({h["webhook-id"] for h, _ in messages}) == 1  # one event, three attempts
    assert len({b for _, b in messages}) == 1  # the same body each time
    assert all(verify(secret, h, b) for h, b in messages)


@pytest.mark.slow
def test_a_receiver_that_never_answers_does_not_hold_up_predictions(hooked, known_images):
    app, headers, _ = hooked
    client = app.test_client()
    with Receiver() as receiver:
        receiver.hold.set()  # every request waits until the test ends
        first = _submit(client, headers, known_images[0][0], webhook=receiver.url)
        first_id = first.json["items"][0]["id"]
        _final(client, headers, [first_id])
        wait_for(receiver.messages, 60, "the webhook's first attempt to arrive")
        # While that attempt hangs, more predictions with webhooks go through.
        more = _submit(client, headers, known_images[1][0], count=3, webhook=receiver.url)
        items = _final(client, headers, [p["id"] for p in more.json["items"]])
        assert [p["state"] for p in items] == ["done"] * 3
        record = client.get(f"/api/v1/predictions/{first_id}/webhook", headers=headers).json
        assert record["deliveries"][0]["state"] == "pending"
        assert record["deliveries"][0]["attempts"] == []  # still waiting for its answer


@pytest.fixture
def hooked_db(sqlite_url):
    """(Database, Deliveries, a token's secret, make(url, events) -> prediction id): a new
    database whose predictions have webhooks, without any worker."""
    from sieve.database import Database, Deliveries
    from sieve.migrate import upgrade

    upgrade(sqlite_url)
    db = Database(sqlite_url)
    user = db.create_user("owner@example.com", "hash")
    secret = webhooks.new_secret()
    token = db.create_api_token(user.id, "t", "0" * 64, "sieve_0", ["predict"], secret)

    def make(url: str, events: str = "final") -> str:
        [[prediction]] = db.create_submissions([([(b"png", "image/png", "a.png")], "filter",
                                                 user.id, None, {"url": url, "events": events,
                                                                 "token_id": token.id})])
        return prediction.id

    yield db, Deliveries(db), secret, make
    db.dispose()


def _settings(**changes):

    from sieve.config import get_settings

    return get_settings().replace(**{"webhook_allow_hosts": (LOOPBACK,),
                                  "webhook_timeout": 5.0, **changes})


def test_deliveries_are_recorded_with_the_state_changes_they_want(hooked_db):
    db, deliveries, _, make = hooked_db
    final, every = make("https://93.184.215.14/"), make("https://93.184.215.14/", "all")
    for state, before in (("filtering", "queued"), ("classifying", "filtering"),
                          ("done", "classifying")):
        db.transitions({final: {}, every: {}}, state, (before,))
    assert [d["type"] for d in deliveries.for_prediction(final)] == ["prediction.done"]
    assert [d["type"] for d in deliveries.for_prediction(every)] == [
        "prediction.filtering", "prediction.classifying", "prediction.done"]
    assert len(deliveries.claim_due(lease=60)) == 4
    assert deliveries.claim_due(lease=60) == []  # claimed: not due again before the lease


def test_an_attempt_is_signed_recorded_and_retried_until_its_time_is_up(hooked_db):
    from workers.webhooks import deliver

    db, deliveries, secret, make = hooked_db
    with Receiver(statuses=(500, 200)) as receiver:
        pid = make(receiver.url)
        db.transition(pid, "cancelled", ("queued",), reason="cancelled by its owner")
        [(delivery_id, attempts)] = deliveries.claim_due(lease=60)
        assert deliver(deliveries, _settings(webhook_retry_base=0.01), delivery_id,
                       attempts) == "http_error"
        assert deliver(deliveries, _settings(), delivery_id, attempts) is None  # stale claim
        time.sleep(0.05)
        [(delivery_id, attempts)] = deliveries.claim_due(lease=60)
        assert deliver(deliveries, _settings(), delivery_id, attempts) == "delivered"
        messages = receiver.messages()
    assert [json.loads(body)["type"] for _, body in messages] == ["prediction.cancelled"] * 2
    assert all(verify(secret, headers, body) for headers, body in messages)
    [record] = deliveries.for_prediction(pid)
    assert record["state"] == "delivered"
    assert [(a["outcome"], a["status_code"]) for a in record["attempts"]] == [
        ("http_error", 500), ("delivered", 200)]

    with Receiver(statuses=(503,)) as receiver:
        pid = make(receiver.url)
        db.transition(pid, "cancelled", ("queued",))
        [(delivery_id, attempts)] = deliveries.claim_due(lease=60)
        assert deliver(deliveries, _settings(webhook_retry_for=0), delivery_id,
                       attempts) == "http_error"
    assert deliveries.for_prediction(pid)[0]["state"] == "failed"  # no time left to retry


def test_a_url_no_longer_allowed_is_refused_at_delivery_without_a_request(hooked_db):
    from workers.webhooks import deliver

    db, deliveries, _, make = hooked_db
    with Receiver() as receiver:
        pid = make(receiver.url)
        db.transition(pid, "cancelled", ("queued",))
        [(delivery_id, attempts)] = deliveries.claim_due(lease=60)
        assert deliver(deliveries, _settings(webhook_allow_hosts=()), delivery_id,
                       attempts) == "refused"
        assert receiver.messages() == []
    [record] = deliveries.for_prediction(pid)
    assert record["state"] == "failed" and "loopback" in record["attempts"][0]["error"]


def test_a_new_token_shows_its_webhook_secret_once(web_client, auth, runner):
    import re

    from tests.fixtures_web import csrf_token

    auth.register()
    page = web_client.post("/account", data={"csrf_token": auth.token("/account"),
                                             "name": "hooks", "predict": "y"})
    secret = re.search(r'<code id="webhook-secret">([^<]+)</code>',
                       page.get_data(as_text=True))[1]
    assert secret.startswith("whsec_") and len(base64.b64decode(secret[6:])) == 24
    listing = web_client.get("/account").get_data(as_text=True)
    assert secret not in listing and csrf_token(listing)
    made = runner.invoke(args=["tokens", "create", "--email", "ada@example.com"])
    assert made.exit_code == 0 and "webhook signing secret: whsec_" in made.output
