"""The API over real HTTP with a real worker and Redis: the documented examples end to end,
and a property-based run of every operation against the OpenAPI document."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.fixtures_api import LiveServer
from tests.images import noise

EXAMPLES = Path(__file__).resolve().parent.parent / "docs" / "examples"
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance, response_headers_conformance]


@pytest.fixture
def served(start_worker, live_server, make_user, known_images, tmp_path):
    """A live server with a worker, a user's token and a known image on disk."""
    start_worker()
    image = tmp_path / "known.png"
    image.write_bytes(known_images[0][0])
    env = {**os.environ, "SIEVE_URL": live_server.url, "SIEVE_TOKEN": make_user().token}
    return env, image, known_images[0][1]


@pytest.mark.slow
def test_python_example_follows_a_prediction_to_done(served):
    env, image, label = served
    run = subprocess.run([sys.executable, str(EXAMPLES / "api_client.py"), str(image)],
                         env=env, capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert result["state"] == "done" and result["label"] == label


@pytest.mark.slow
@pytest.mark.skipif(not shutil.which("curl"), reason="curl is not installed")
def test_curl_example_polls_a_prediction_to_done(served):
    env, image, label = served
    run = subprocess.run(["sh", str(EXAMPLES / "api_curl.sh"), str(image)], env=env,
                         capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert result["state"] == "done" and result["label"] == label


@pytest.mark.slow
def test_submit_with_wait_answers_once_the_predictions_are_final(served):
    env, image, label = served
    answer = requests.post(f"{env['SIEVE_URL']}/api/v1/predictions", params={"wait": 20},
                           headers={"Authorization": f"Bearer {env['SIEVE_TOKEN']}"},
                           files=[("image", ("a.png", image.read_bytes())),
                                  ("image", ("b.png", image.read_bytes()))], timeout=60)
    assert answer.status_code == 201, answer.text
    items = answer.json()["items"]
    assert [(p["state"], p["label"]) for p in items] == [("done", label)] * 2
    assert answer.headers["Location"] == items[0]["links"]["self"]
    assert "Retry-After" not in answer.headers


@pytest.mark.slow
def test_every_operation_conforms_to_the_openapi_document(make_api_app, make_user,
                                                          start_worker, tmp_path,
                                                          trained_store):
    shutil.copytree(trained_store.root, tmp_path / "models")  # promotions stay private
    app = make_api_app(MODEL_STORE_URL=str(tmp_path / "models"), SIEVE_MAX_WAIT_SECONDS=5)
    user = make_user(app, scopes=("predict", "train"), admin=True)
    start_worker()
    with LiveServer(app) as server:
        schema = schemathesis.openapi.from_url(f"{server.url}/api/v1/openapi.json")
        operations = [result.ok() for result in schema.get_all_operations()]
        assert len(operations) == 17
        for operation in operations:
            _fuzz(operation, user.headers)
        _malformed(schema, user.headers, server.url)


def _malformed(schema, headers: dict, url: str) -> None:
    """The cases that probing found to answer 500: each is now a documented 4xx. (JSON
    has no Infinity, so {"epochs": 1e999} is in tests/test_malformed_requests.py.)"""
    made = requests.post(f"{url}/api/v1/predictions", headers=headers, timeout=30,
                         files=[("image", ("a.png", noise()))])
    prediction_id = made.json()["items"][0]["id"]
    events = schema["/api/v1/predictions/{prediction_id}/events"]["GET"]
    runs = schema["/api/v1/training-runs"]["POST"]
    cases = [
        (events.Case(path_parameters={"prediction_id": prediction_id},
                     headers={"Last-Event-ID": str(2**63)}), 400),
        (runs.Case(body={"epochs": 10**400}, media_type="application/json"), 422),
        (runs.Case(body={"lr": 1e308, "seed": 10**30}, media_type="application/json"), 422),
    ]
    for case, status in cases:
        response = case.call(headers=headers, timeout=30)
        case.validate_response(response, checks=CHECKS, headers=headers)
        assert response.status_code == status, response.text


def _fuzz(operation, headers: dict) -> None:
    """A bounded property-based run of one operation with the default checks."""

    @given(case=operation.as_strategy())
    @settings(max_examples=40, deadline=None, derandomize=True, database=None,
              phases=[Phase.explicit, Phase.generate],
              suppress_health_check=list(HealthCheck))
    def run(case):
        response = case.call(headers=headers, timeout=30)
        case.validate_response(response, checks=CHECKS, headers=headers)

    run()
