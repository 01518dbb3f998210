"""Sessions and logins: the development key, revocable sessions, login throttling that
never locks an owner out, and the client address behind trusted proxies. Through the
test client, and under the production command (gunicorn with gevent) where it matters."""

import os
import subprocess
import sys

import pytest
import redis
import requests
from flask import Flask
from flask.sessions import SecureCookieSessionInterface

from bench.processes import free_port, wait_for
from sieve.config import ROOT
from sieve.migrate import upgrade
from tests.fixtures_web import (
    PASSWORD,
    SECRET_KEY,
    AuthActions,
    csrf_token,
    session_cookie,
    sign_up,
)
from web import create_app

PUBLIC_DEVELOPMENT_KEY = "sieve-development-key-not-secret"  # the key of older versions


def forged_cookie(key: str, **session) -> str:
    """A session cookie signed with `key`, as anyone who knows the key can make one."""
    app = Flask("forger")
    app.secret_key = key
    return SecureCookieSessionInterface().get_signing_serializer(app).dumps(session)


def log_in(url: str, email: str, password: str = PASSWORD, address: str | None = None):
    """Post the login form over HTTP, from `address` as a trusted proxy reports it."""
    forwarded = {"X-Forwarded-For": address} if address else {}
    page = requests.get(f"{url}/login", timeout=10, headers=forwarded)
    return requests.post(f"{url}/login", allow_redirects=False, timeout=30,
                         headers={"Cookie": f"session={session_cookie(page)}", **forwarded},
                         data={"csrf_token": csrf_token(page.text), "email": email,
                               "password": password})


# 1. The development server signs sessions with a random key of its own.

def test_development_key_is_random_kept_and_ignored_by_git(tmp_path, sqlite_url,
                                                           redis_server, monkeypatch):
    monkeypatch.delenv("SECRET_KEY", raising=False)
    monkeypatch.setenv("SIEVE_ENV", "development")
    upgrade(sqlite_url)
    config = {"DATABASE_URL": sqlite_url, "REDIS_URL": redis_server.url,
              "SECRET_KEY_FILE": tmp_path / "secret-key"}
    first, second = create_app(dict(config)), create_app(dict(config))
    key = first.config["SECRET_KEY"]
    assert key != PUBLIC_DEVELOPMENT_KEY and len(key) >= 32
    assert second.config["SECRET_KEY"] == key  # sessions survive a restart
    assert (tmp_path / "secret-key").stat().st_mode & 0o077 == 0
    other = create_app({**config, "SECRET_KEY_FILE": tmp_path / "elsewhere"})
    assert other.config["SECRET_KEY"] != key  # one per checkout
    ignored = subprocess.run(["git", "check-ignore", "-q", "var/secret-key"], cwd=ROOT,
                             check=False, timeout=30)
    assert ignored.returncode == 0, "var/secret-key must be ignored by git"
    for app in (first, second, other):
        app.extensions["sieve"].listener.close()


def test_flask_run_refuses_a_cookie_signed_with_a_public_key(sqlite_url, redis_server,
                                                             tmp_path):
    """`flask --app web run` (what `make run` starts) without SECRET_KEY: a session
    cookie forged for an existing account with the once-public key is not a login."""
    upgrade(sqlite_url)
    port = free_port()
    env = {key: value for key, value in os.environ.items()
           if key not in ("SECRET_KEY", "SIEVE_ENV")}
    env.update({"DATABASE_URL": sqlite_url, "REDIS_URL": redis_server.url,
                "SIEVE_SECRET_KEY_FILE": str(tmp_path / "secret-key")})
    log = open(tmp_path / "flask.log", "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen([sys.executable, "-m", "flask", "--app", "web", "run",
                                "--port", str(port)], cwd=ROOT, env=env, stdout=log,
                               stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _answers(url), 60, "flask run")
        sign_up(url, "owner@example.com")
        forged = forged_cookie(PUBLIC_DEVELOPMENT_KEY, user_id=1, session_version=0)
        page = requests.get(f"{url}/account", headers={"Cookie": f"session={forged}"},
                            allow_redirects=False, timeout=10)
        assert page.status_code == 302 and "/login" in page.headers["Location"]
    finally:
        process.terminate()
        process.wait(timeout=15)
        log.close()
    assert "random key" in (tmp_path / "flask.log").read_text()


def _answers(url: str) -> bool:
    try:
        return requests.get(f"{url}/login", timeout=2).ok
    except requests.ConnectionError:
        return False


# 4. Sessions end when their owner says so.

def test_a_cookie_copied_before_logout_stops_working(production):
    server = production()
    cookie = sign_up(server.url, "ada@example.com")
    headers = {"Cookie": f"session={cookie}"}
    assert requests.get(f"{server.url}/account", headers=headers, timeout=10,
                        allow_redirects=False).status_code == 200
    page = requests.get(f"{server.url}/account", headers=headers, timeout=10)
    with_csrf = {"Cookie": f"session={session_cookie(page)}"}  # the form's token added
    out = requests.post(f"{server.url}/logout", headers=with_csrf, allow_redirects=False,
                        data={"csrf_token": csrf_token(page.text)}, timeout=10)
    assert out.status_code == 302
    replayed = requests.get(f"{server.url}/account", headers=headers, timeout=10,
                            allow_redirects=False)
    assert replayed.status_code == 302 and "/login" in replayed.headers["Location"]


def test_a_new_password_ends_the_other_sessions(app, auth):
    auth.register()
    other = AuthActions(app.test_client())
    assert other.login().status_code == 302
    token = auth.token("/account")
    changed = auth.client.post("/account/password", data={
        "csrf_token": token, "current": PASSWORD, "password": "a brand new passphrase",
        "confirm": "a brand new passphrase"})
    assert changed.status_code == 302
    assert auth.client.get("/account").status_code == 200  # this session goes on
    assert other.client.get("/account").status_code == 302  # the other one has ended
    assert other.login().status_code == 401
    assert other.login(password="a brand new passphrase").status_code == 302


def test_a_wrong_current_password_changes_nothing(app, auth):
    auth.register()
    refused = auth.client.post("/account/password", data={
        "csrf_token": auth.token("/account"), "current": "not my password",
        "password": "a brand new passphrase", "confirm": "a brand new passphrase"})
    assert refused.status_code == 400
    assert "not your current password" in refused.get_data(as_text=True)
    assert auth.client.get("/account").status_code == 200
    guess = {"csrf_token": auth.token("/account"), "password": "a brand new passphrase",
             "confirm": "a brand new passphrase", "current": "another guess"}
    for _ in range(app.config["LOGIN_MAX_FAILURES"] - 1):  # guessing is throttled
        auth.client.post("/account/password", data=guess)
    answer = auth.client.post("/account/password", data={**guess, "current": PASSWORD})
    assert "Too many failed attempts" in answer.get_data(as_text=True)


def test_log_out_everywhere_ends_every_session(app, auth):
    auth.register()
    other = AuthActions(app.test_client())
    other.login()
    out = auth.client.post("/account/logout-everywhere",
                           data={"csrf_token": auth.token("/account")})
    assert out.status_code == 302
    assert auth.client.get("/account").status_code == 302
    assert other.client.get("/account").status_code == 302


# 2. Someone else's failed logins never lock an account's owner out.

def test_failures_from_one_address_do_not_lock_the_owner_elsewhere(app, auth):
    auth.register()
    auth.logout()
    attacker = AuthActions(app.test_client())
    attacker.client.environ_base["REMOTE_ADDR"] = "192.0.2.66"
    answers = [attacker.login(password="wrong password!").status_code for _ in range(8)]
    assert 429 in answers  # the attacker is slowed down ...
    owner = AuthActions(app.test_client())
    owner.client.environ_base["REMOTE_ADDR"] = "198.51.100.7"
    assert owner.login().status_code == 302  # ... the owner is not


def test_behind_a_trusted_proxy_each_client_is_throttled_on_its_own(production):
    """Every client reaches gunicorn through one proxy address: with
    SIEVE_TRUSTED_PROXIES=1 the throttle counts the client each proxy reports."""
    server = production(SIEVE_TRUSTED_PROXIES="1", SIEVE_LOGIN_MAX_FAILURES_PER_ADDRESS="5")
    sign_up(server.url, "owner@example.com", {"X-Forwarded-For": "198.51.100.7"})
    answers = [log_in(server.url, f"guess{i}@example.com", "wrong password!",
                      "203.0.113.5").status_code for i in range(20)]
    assert answers[:4] == [401] * 4 and answers[-1] == 429
    assert log_in(server.url, "owner@example.com", address="198.51.100.7").status_code == 302
    assert log_in(server.url, "owner@example.com", address="203.0.113.5").status_code == 429


def test_untrusted_forwarded_headers_are_ignored(app, auth):
    """Without trusted proxies, a client cannot pick its address with X-Forwarded-For."""
    auth.register()
    auth.logout()
    for i in range(12):
        auth.client.post("/login", headers={"X-Forwarded-For": f"192.0.2.{i}"}, data={
            "csrf_token": auth.token("/login"), "email": "ada@example.com",
            "password": "wrong password!"})
    assert auth.login().status_code == 429


def test_registering_known_emails_is_slowed_down(make_app):
    """Registration says when an email has an account (documented); asking again and
    again from one address is throttled like failed logins."""
    app = make_app(LOGIN_MAX_FAILURES_PER_ADDRESS=3, LOGIN_MAX_FAILURES=3)
    auth = AuthActions(app.test_client())
    auth.register()
    auth.logout()
    answers = [auth.register().status_code for _ in range(4)]
    assert answers[0] == 400 and answers[-1] == 429


@pytest.fixture
def make_app(database_url, redis_server):
    """make_app(**config): the app on the test database and Redis."""
    made = []

    def make(**config):
        made.append(create_app({"TESTING": True, "SECRET_KEY": SECRET_KEY,
                                "DATABASE_URL": database_url,
                                "REDIS_URL": redis_server.url, **config}))
        return made[-1]

    yield make
    for app in made:
        app.extensions["sieve"].listener.close()
        app.extensions["sieve"].db.dispose()
    redis.Redis.from_url(redis_server.url).flushall()
