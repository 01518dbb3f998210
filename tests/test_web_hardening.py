"""Browser hardening and the smaller exposures: security headers and a strict CSP on
every page (whose own scripts and styles satisfy it), HSTS and Secure cookies in
production, who may read /metrics, the production key check, 413 messages that name the
limit hit, and training tokens for administrators only."""

import re
import socket
import subprocess
import sys
import time

import pytest
import requests

from bench.processes import free_port
from sieve.config import ROOT
from tests.fixtures_web import SECRET_KEY, csrf_token, sign_up
from web import create_app

PAGES = ["/", "/history", "/account", "/models", "/login", "/register", "/api/v1/docs"]
INLINE = [re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.I),  # a script without src
          re.compile(r"\son[a-z]+\s*=", re.I),                 # an event handler
          re.compile(r"\sstyle\s*=", re.I), re.compile(r"<style", re.I),
          re.compile(r"javascript:", re.I)]


def test_every_page_sends_a_strict_csp_and_the_security_headers(app, web_client, auth):
    auth.register()
    for path in PAGES:
        response = web_client.get(path)
        assert response.status_code == 200, path
        csp = response.headers["Content-Security-Policy"]
        assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
        assert "script-src 'self'" in csp and "style-src 'self'" in csp
        assert "frame-ancestors 'none'" in csp and "object-src 'none'" in csp
        assert response.headers["X-Frame-Options"] == "DENY"
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Referrer-Policy"] == "same-origin"
        assert response.headers["Cache-Control"] == "no-store", path
        html = response.get_data(as_text=True)
        for pattern in INLINE:
            assert not pattern.search(html), f"{path}: {pattern.pattern} would break the CSP"


def test_the_page_that_shows_a_new_token_is_never_cached(web_client, auth):
    auth.register()
    made = web_client.post("/account", data={"csrf_token": auth.token("/account"),
                                              "name": "laptop", "predict": "y"})
    assert "sieve_" in made.get_data(as_text=True)
    assert made.headers["Cache-Control"] == "no-store"


def test_production_sends_hsts_and_secure_cookies(production):
    server = production()
    page = requests.get(f"{server.url}/login", timeout=10)
    assert page.headers["Strict-Transport-Security"].startswith("max-age=")
    cookie = page.headers["Set-Cookie"]
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert page.headers["Content-Security-Policy"].startswith("default-src 'self'")


@pytest.mark.parametrize("key", ["aaaaaaaaaaaaaaaa", "a" * 64, "ab" * 20, "short-key-123"])
def test_production_refuses_a_weak_secret_key(monkeypatch, key):
    monkeypatch.setenv("SIEVE_ENV", "production")
    monkeypatch.setenv("SECRET_KEY", key)
    with pytest.raises(RuntimeError, match="SECRET_KEY must be set"):
        create_app()


def test_metrics_are_not_public(make_metrics_app):
    app = make_metrics_app()
    local = app.test_client()
    assert local.get("/metrics").status_code == 200  # Prometheus on this host
    remote = app.test_client()
    remote.environ_base["REMOTE_ADDR"] = "203.0.113.9"
    assert remote.get("/metrics").status_code == 403
    proxied = local.get("/metrics", headers={"X-Forwarded-For": "203.0.113.9"})
    assert proxied.status_code == 403  # a proxy on this host forwards a stranger


def test_metrics_with_a_token(make_metrics_app):
    app = make_metrics_app(METRICS_TOKEN="scrape-token-0123456789")
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = "203.0.113.9"
    assert client.get("/metrics").status_code == 403
    wrong = client.get("/metrics", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 403
    right = client.get("/metrics", headers={"Authorization": "Bearer scrape-token-0123456789"})
    assert right.status_code == 200 and b"sieve_web_requests_total" in right.data


@pytest.fixture
def make_metrics_app(sqlite_url, redis_server):
    """make_metrics_app(**config): an app on a new database."""
    from sieve.migrate import upgrade

    upgrade(sqlite_url)
    made = []

    def make(**config):
        made.append(create_app({"TESTING": True, "SECRET_KEY": SECRET_KEY,
                                "DATABASE_URL": sqlite_url, "REDIS_URL": redis_server.url,
                                **config}))
        return made[-1]

    yield make
    for app in made:
        app.extensions["sieve"].listener.close()


def test_worker_metrics_listen_on_this_host_only(redis_server):
    port = free_port()
    code = ("import time; from workers.metrics import serve; "
            f"serve({port}, {redis_server.url!r}, ['filter']); time.sleep(60)")
    process = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT)
    try:
        deadline = time.monotonic() + 30
        while not _listening(port) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _listening(port), "the worker's metrics did not start"
        assert requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).ok
        listeners = [line.split()[1] for line in open("/proc/net/tcp").read().splitlines()[1:]
                     if line.split()[3] == "0A"]  # state LISTEN
        assert f"0100007F:{port:04X}" in listeners and f"00000000:{port:04X}" not in listeners
    finally:
        process.terminate()
        process.wait(timeout=15)


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def test_a_form_of_too_many_parts_says_so(app, web_client):
    fields = {f"field{i}": "x" for i in range(1200)}
    answer = web_client.post("/login", data=fields, content_type="multipart/form-data")
    assert answer.status_code == 413
    text = answer.get_data(as_text=True)
    assert "more than 1000 parts" in text and "MB" not in text


def test_an_upload_over_the_size_bound_says_so(app, web_client):
    body = b"x" * (app.config["MAX_CONTENT_LENGTH"] + 1)
    answer = web_client.post("/login", data=body, content_type="application/octet-stream")
    assert answer.status_code == 413 and "larger than 10 MB" in answer.get_data(as_text=True)


def test_the_cli_gives_training_tokens_to_administrators_only(app, runner):
    assert runner.invoke(args=["create-user", "user@example.com"],
                         input="a long enough password\na long enough password\n").exit_code == 0
    refused = runner.invoke(args=["tokens", "create", "--email", "user@example.com",
                                  "--scope", "train"])
    assert refused.exit_code != 0 and "administrator" in refused.output
    allowed = runner.invoke(args=["tokens", "create", "--email", "user@example.com"])
    assert allowed.exit_code == 0 and allowed.output.startswith("sieve_")


def test_the_account_page_works_when_signed_up_over_http(production):
    """The account page under the production command, reached with a session cookie."""
    server = production()
    cookie = sign_up(server.url, "ada@example.com")
    page = requests.get(f"{server.url}/account", headers={"Cookie": f"session={cookie}"},
                        timeout=10)
    assert page.status_code == 200 and csrf_token(page.text)
    assert page.headers["Cache-Control"] == "no-store"
