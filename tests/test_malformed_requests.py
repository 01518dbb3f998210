"""Malformed parameters get a 4xx with a message, never a 5xx: the cases found by probing
(event numbers above 2^63, a huge history page, deeply nested or overflowing JSON), and
a property-based run of every route with malformed path values, query parameters,
headers and bodies."""

import io
import json
import urllib.parse

import pytest
import redis
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.fixtures_web import PASSWORD, SECRET_KEY, AuthActions
from tests.images import noise
from web import create_app
from web.api.tokens import create_token
from web.users import create_user

HUGE = str(2**63)
DEEP = "[" * 100_000 + "]" * 100_000


@pytest.fixture
def probed(database_url, redis_server, tmp_path):
    """An app with an administrator signed in (cookie and token) and one cancelled
    prediction of theirs: (test client, bearer headers, prediction id)."""
    app = create_app({"TESTING": True, "SECRET_KEY": SECRET_KEY, "DATABASE_URL": database_url,
                      "REDIS_URL": redis_server.url, "MODEL_STORE_URL": str(tmp_path / "models"),
                      "SIEVE_RATE_LIMIT": "100000/minute", "SIEVE_MAX_WAIT_SECONDS": 1})
    with app.app_context():
        user = create_user("admin@example.com", PASSWORD, is_admin=True)
        token, _ = create_token(user.id, "probe", ["predict", "train"])
    client = app.test_client()
    assert AuthActions(client).login("admin@example.com").status_code == 302
    headers = {"Authorization": f"Bearer {token}"}
    made = client.post("/api/v1/predictions", headers=headers,
                       data={"image": [(io.BytesIO(noise()), "a.png")]})
    prediction_id = made.get_json()["items"][0]["id"]
    assert client.post(f"/api/v1/predictions/{prediction_id}/cancel",
                       headers=headers).status_code == 200
    yield client, headers, prediction_id
    app.extensions["sieve"].listener.close()
    app.extensions["sieve"].db.dispose()
    redis.Redis.from_url(redis_server.url).flushall()


@pytest.mark.parametrize(("path", "headers"), [
    ("/api/v1/predictions/{id}/events", {"Last-Event-ID": HUGE}),
    ("/api/v1/predictions/{id}/events?last_event_id=" + HUGE, {}),
    ("/predictions/{id}/events", {"Last-Event-ID": HUGE}),
    ("/predictions/{id}/events?after=" + HUGE, {}),
    ("/predictions/{id}/events?after=-1", {}),
    ("/history?page=" + "9" * 30, {}),
])
def test_numbers_beyond_the_database_are_a_400(probed, path, headers):
    client, bearer, prediction_id = probed
    answer = client.get(path.format(id=prediction_id), headers={**bearer, **headers})
    assert answer.status_code == 400, answer.get_data(as_text=True)[:500]
    assert "page" in answer.get_data(as_text=True) or "event" in answer.get_data(as_text=True)


@pytest.mark.parametrize(("body", "status", "message"), [
    (DEEP, 400, "nested too deeply"),
    ('{"epochs": 1e999}', 422, "epochs=inf is not a whole number"),
    ('{"epochs": 1' + "0" * 400 + "}", 422, "is not a whole number"),
    ('{"lr": 1e999}', 422, "lr=inf is not a number"),
    ('{"time_limit": 1e999}', 422, "time_limit=inf is not a number"),
    ('{"time_limit": NaN}', 422, "time_limit=nan is not a number"),
])
def test_training_parameters_that_overflow_are_refused(probed, body, status, message):
    client, bearer, _ = probed
    answer = client.post("/api/v1/training-runs", data=body, headers=bearer,
                         content_type="application/json")
    assert answer.status_code == status, answer.get_data(as_text=True)[:500]
    assert message in answer.get_json()["detail"]


def test_an_api_form_of_too_many_parts_says_so(probed):
    client, bearer, _ = probed
    fields = {f"field{i}": "x" for i in range(1200)}
    answer = client.post("/api/v1/predictions", headers=bearer, data=fields,
                         content_type="multipart/form-data")
    assert answer.status_code == 413 and "parts" in answer.get_json()["detail"]


# Every route, with values chosen to break parsers: huge and negative numbers, floats
# that overflow, long and odd text.
NUMBERS = st.one_of(st.integers(-(2**70), 2**70), st.sampled_from([2**63, 2**64, -(2**63) - 1]))
VALUES = st.one_of(NUMBERS.map(str), st.floats().map(str),
                   st.sampled_from(["", "1e999", "-0", "NaN", "inf", "0x10", "1_000", "x" * 5000,
                                    "9" * 5000, "%00", "../..", "null", "[]", "{}"]),
                   st.text(max_size=40))
HEADER_VALUES = VALUES.map(lambda v: v.encode("latin-1", "replace").decode("latin-1")[:2000]
                           .replace("\n", " ").replace("\r", " "))
PARAMS = st.dictionaries(st.sampled_from(["page", "after", "last_event_id", "wait", "limit",
                                          "cursor", "id", "state", "next", "pipeline"])
                         | st.text(min_size=1, max_size=10), VALUES, max_size=4)
HEADERS = st.dictionaries(st.sampled_from(["Last-Event-ID", "Idempotency-Key",
                                           "X-Request-ID", "Content-Type"]),
                          HEADER_VALUES, max_size=3)
JSON = st.recursive(st.none() | st.booleans() | NUMBERS | st.floats() | st.text(max_size=10),
                    lambda inner: st.lists(inner, max_size=3)
                    | st.dictionaries(st.sampled_from(["epochs", "lr", "seed", "model",
                                                      "time_limit", "width", "batch_size",
                                                      "promote", "subset"]), inner,
                                      max_size=3), max_leaves=8)
BODIES = st.one_of(st.none(), st.just(DEEP), JSON.map(json.dumps),
                   st.binary(max_size=200).map(lambda b: b.decode("latin-1")))


def _routes(app) -> list[tuple[str, str, tuple[str, ...]]]:
    """(rule, method, argument names) of every route but the static files."""
    return sorted((rule.rule, method, tuple(sorted(rule.arguments)))
                  for rule in app.url_map.iter_rules() if rule.endpoint != "static"
                  for method in rule.methods - {"HEAD", "OPTIONS"})


def test_no_route_answers_5xx_to_malformed_parameters(probed):
    client, bearer, prediction_id = probed
    routes = _routes(client.application)
    path_values = st.one_of(st.just(prediction_id), VALUES).map(
        lambda v: urllib.parse.quote(v, safe="") or "x")

    @given(route=st.sampled_from(routes), values=st.lists(path_values, min_size=3,
                                                          max_size=3),
           query=PARAMS, headers=HEADERS, body=BODIES)
    @example(route=("/api/v1/predictions/<prediction_id>/events", "GET", ("prediction_id",)),
             values=[prediction_id] * 3, query={}, headers={"Last-Event-ID": HUGE}, body=None)
    @example(route=("/predictions/<prediction_id>/events", "GET", ("prediction_id",)),
             values=[prediction_id] * 3, query={"after": HUGE}, headers={}, body=None)
    @example(route=("/history", "GET", ()), values=[""] * 3, query={"page": "9" * 30},
             headers={}, body=None)
    @example(route=("/api/v1/training-runs", "POST", ()), values=[""] * 3, query={},
             headers={"Content-Type": "application/json"}, body=DEEP)
    @example(route=("/api/v1/training-runs", "POST", ()), values=[""] * 3, query={},
             headers={"Content-Type": "application/json"}, body='{"epochs": 1e999}')
    @settings(max_examples=250, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    def probe(route, values, query, headers, body):
        rule, method, arguments = route
        path = rule
        for name, value in zip(arguments, values, strict=False):
            path = path.replace(f"<{name}>", value)
            path = path.replace(f"<int:{name}>", value)
            for converter in ("int", "path"):
                start = path.find(f"<{converter}(")
                if start >= 0:
                    path = path[:start] + value + path[path.index(">", start) + 1:]
        answer = client.open(path, method=method, query_string=query, data=body,
                             headers={**bearer, **headers})
        assert answer.status_code < 500, (method, path, query, headers,
                                          (body or "")[:200], answer.status_code,
                                          answer.get_data(as_text=True)[:500])

    probe()
