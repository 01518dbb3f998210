"""The Python client and the `sieve` command: against a live server with a real worker,
and their retries against a real HTTP server that answers 429 and 503 first."""

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from sieve.config import ROOT
from sieve_client import Client, ConfigError, SieveError
from sieve_client.client import retry_after
from sieve_client.config import load
from tests.fixtures_api import LiveServer


def sieve(env: dict, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """The `sieve` command (as `python -m sieve_client`, the console script's function)."""
    return subprocess.run([sys.executable, "-m", "sieve_client", *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout, check=False)


def test_retry_after_reads_seconds_and_dates():
    answer = requests.Response()
    answer.headers["Retry-After"] = "7"
    assert retry_after(answer, 1.0) == 7.0
    answer.headers["Retry-After"] = formatdate(time.time() + 30, usegmt=True)
    assert 25 < retry_after(answer, 1.0) <= 30
    answer.headers["Retry-After"] = "soon"
    assert retry_after(answer, 1.5) == 1.5


def test_settings_come_from_arguments_the_environment_then_the_file(tmp_path, monkeypatch):
    path = tmp_path / "config.toml"
    path.write_text('url = "http://from-file:1"\ntoken = "sieve_file"\n')
    monkeypatch.setenv("SIEVE_CONFIG", str(path))
    monkeypatch.delenv("SIEVE_URL", raising=False)
    monkeypatch.delenv("SIEVE_TOKEN", raising=False)
    assert load() == load("http://from-file:1/", None)
    assert (load().url, load().token) == ("http://from-file:1", "sieve_file")
    monkeypatch.setenv("SIEVE_TOKEN", "sieve_env")
    assert load().token == "sieve_env" and load(token="sieve_arg").token == "sieve_arg"
    path.unlink()
    monkeypatch.delenv("SIEVE_TOKEN")
    with pytest.raises(ConfigError, match="no API token"):
        load()


class Flaky:
    """A real HTTP server that answers each POST with the next of `answers` (status,
    headers) and records the Idempotency-Key of each."""

    def __init__(self, answers):
        self.answers, self.keys, self.times = list(answers), [], []
        flaky = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                flaky.keys.append(self.headers.get("Idempotency-Key"))
                flaky.times.append(time.monotonic())
                status, headers = flaky.answers.pop(0)
                body = json.dumps({"items": [{"id": "p1", "state": "queued",
                                              "pipeline": "filter"}]} if status < 300 else
                                  {"title": "Busy", "status": status, "detail": "later"})
                self.send_response(status)
                for name, value in {**headers, "Content-Length": str(len(body))}.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body.encode())

            def log_message(self, *_args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_a_submission_is_retried_after_429_and_503_with_one_idempotency_key():
    flaky = Flaky([(429, {"Retry-After": "1"}), (503, {"Retry-After": "0"}), (202, {})])
    try:
        [found] = Client(flaky.url, "sieve_x", retries=3).predict(("a.png", b"png"))
    finally:
        flaky.close()
    assert found.id == "p1" and found.state == "queued"
    assert len(flaky.keys) == 3 and flaky.keys[0] and len(set(flaky.keys)) == 1
    assert flaky.times[1] - flaky.times[0] >= 0.9  # Retry-After: 1 was honoured


def test_an_error_answer_is_raised_with_its_problem_details():
    flaky = Flaky([(503, {"Retry-After": "0"})] * 2)
    try:
        with pytest.raises(SieveError) as raised:
            Client(flaky.url, "sieve_x", retries=1).predict(("a.png", b"png"))
    finally:
        flaky.close()
    assert (raised.value.status, raised.value.detail) == (503, "later")


@pytest.fixture
def served(make_api_app, make_user, start_worker, tmp_path, trained_store, known_images):
    """(env for the command, the server's URL, an admin's token, image path, its label):
    a live server on a private copy of the models with a real worker."""
    shutil.copytree(trained_store.root, tmp_path / "models")  # promotions stay private
    app = make_api_app(MODEL_STORE_URL=str(tmp_path / "models"))
    user = make_user(app, scopes=("predict", "train"), admin=True)
    start_worker()
    image = tmp_path / "known.png"
    image.write_bytes(known_images[0][0])
    with LiveServer(app) as server:
        env = {**os.environ, "SIEVE_URL": server.url, "SIEVE_TOKEN": user.token,
               "SIEVE_CONFIG": str(tmp_path / "absent.toml")}
        yield env, server.url, user.token, image, known_images[0][1]


@pytest.mark.slow
def test_the_client_predicts_waits_and_follows_events(served):
    _, url, token, image, label = served
    client = Client(url, token, timeout=30)
    [done] = client.predict(image, wait=60)
    assert (done.state, done.label, done.filename) == ("done", label, "known.png")
    assert done.final and done.model_versions.keys() == {"filter", "classifier"}
    [queued] = client.predict(image.read_bytes(), classifier_only=True)
    states = [p.state for p in client.events(queued.id)]
    assert states[0] == "queued" and states[-1] == "done"
    assert "filtering" not in states  # the classifier alone
    assert client.prediction(queued.id).label == label
    with pytest.raises(SieveError) as raised:
        client.cancel(queued.id)
    assert raised.value.status == 409


@pytest.mark.slow
def test_the_command_predicts_with_wait_follows_and_shows_status(served):
    env, _, _, image, label = served
    run = sieve(env, "--json", "predict", str(image), str(image), "--wait", "60")
    assert run.returncode == 0, run.stderr
    results = [json.loads(line) for line in run.stdout.splitlines()]
    assert [(r["state"], r["label"]) for r in results] == [("done", label)] * 2

    run = sieve(env, "predict", str(image), "--classifier-only")
    assert run.returncode == 0, run.stderr
    pid = run.stdout.split("\t")[0]
    follow = sieve(env, "follow", pid)
    assert follow.returncode == 0, follow.stderr
    states = [line.split("\t")[2] for line in follow.stdout.splitlines()]
    assert states[0] == "queued" and states[-1] == "done"
    status = sieve(env, "status", pid, "--wait", "30")
    assert status.returncode == 0 and f"done\t{label}" in status.stdout

    missing = sieve(env, "status", "no-such-prediction")
    assert missing.returncode == 1 and "404" in missing.stderr
    unreadable = sieve(env, "predict", "/no/such/image.png")
    assert unreadable.returncode == 1 and "No such file" in unreadable.stderr


@pytest.mark.slow
def test_the_command_submits_and_cancels_runs_and_manages_models(served):
    env, *_ = served
    # No training worker runs here: the run waits in its queue until it is cancelled.
    submit = sieve(env, "--json", "runs", "submit", "--model", "classifier", "--epochs", "1")
    assert submit.returncode == 0, submit.stderr
    run_id = json.loads(submit.stdout)["id"]
    status = sieve(env, "runs", "status", run_id)
    assert status.returncode == 0 and "\tqueued" in status.stdout
    cancel = sieve(env, "runs", "cancel", run_id)
    assert cancel.returncode == 0 and "\tcancelled" in cancel.stdout

    listed = sieve(env, "--json", "models", "list")
    assert listed.returncode == 0, listed.stderr
    models = {m["name"]: m for m in map(json.loads, listed.stdout.splitlines())}
    assert set(models) == {"classifier", "filter"}
    version = models["classifier"]["versions"][0]["version"]
    promote = sieve(env, "models", "promote", "classifier", version, "--alias", "staging")
    assert promote.returncode == 0, promote.stderr
    assert promote.stdout.strip() == f"classifier: staging -> {version}"
    listed = sieve(env, "models", "list")
    assert f"staging={version}" in listed.stdout


@pytest.mark.slow
def test_pip_install_gives_the_console_scripts(served, tmp_path):
    env, _, _, image, label = served
    target = tmp_path / "installed"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation",
         "--quiet", "--target", str(target), str(ROOT)],
        capture_output=True, text=True, timeout=300, check=False)
    assert build.returncode == 0, build.stderr
    scripts = {path.name for path in (target / "bin").iterdir()}
    assert {"sieve", "sieve-train", "sieve-runs", "sieve-registry",
            "sieve-sagemaker"} <= scripts
    # The installed copy, not the checkout: run from elsewhere, with only it on the path.
    installed = {**env, "PYTHONPATH": str(target)}
    run = subprocess.run([str(target / "bin" / "sieve"), "predict", str(image), "--wait"],
                         env=installed, cwd=tmp_path, capture_output=True, text=True,
                         timeout=120, check=False)
    assert run.returncode == 0, run.stderr
    assert f"\tdone\t{label} (" in run.stdout
    helped = subprocess.run([str(target / "bin" / "sieve-registry"), "--help"],
                            env={**os.environ, "PYTHONPATH": str(target)}, cwd=tmp_path,
                            capture_output=True, text=True, timeout=120, check=False)
    assert helped.returncode == 0 and "promote" in helped.stdout


def test_the_python_m_forms_still_run():
    for module in ("training.train", "workers.runs", "sieve.registry",
                   "training.sagemaker"):
        run = subprocess.run([sys.executable, "-m", module, "--help"], cwd=ROOT,
                             capture_output=True, text=True, timeout=120, check=False)
        assert run.returncode == 0, (module, run.stderr)


def test_console_scripts_name_functions_that_exist():
    import importlib
    import tomllib

    scripts = tomllib.loads(Path(ROOT, "pyproject.toml").read_text())["project"]["scripts"]
    for name, target in scripts.items():
        module, function = target.split(":")
        assert callable(getattr(importlib.import_module(module), function)), name
