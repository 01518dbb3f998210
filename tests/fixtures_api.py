"""Fixtures of the JSON API: an app on temporary resources, users with tokens, and a live
server (a real HTTP server in a thread) for the examples and the property-based run."""

import threading
from dataclasses import dataclass

import pytest
import redis
from werkzeug.serving import make_server

from web import create_app
from web.api.tokens import create_token
from web.users import create_user


@dataclass
class ApiUser:
    """A user and one of their tokens, with the header that presents it."""

    id: int
    email: str
    token: str

    @property
    def headers(self) -> dict:
        return {"Authorization": f"Bearer {self.token}"}


@pytest.fixture
def make_api_app(settings, trained_store, redis_server):
    """Build an app on the test Redis and models: make_api_app(database_url, **config)."""

    made = []

    def make(database_url: str | None = None, **config):
        made.append(create_app({
            "TESTING": True, "SECRET_KEY": "test-secret-key-of-some-length",
            "DATABASE_URL": database_url or settings.database_url,
            "REDIS_URL": redis_server.url, "MODEL_STORE_URL": str(trained_store.root),
            "SIEVE_RATE_LIMIT": "100000/minute", "SIEVE_SSE_MAX_SECONDS": 20,
            "SIEVE_SSE_KEEPALIVE_SECONDS": 0.5, **config}))
        return made[-1]

    yield make
    for app in made:
        app.extensions["sieve"].listener.close()  # no thread outlives its test
    redis.Redis.from_url(redis_server.url).flushall()  # rate-limit counters, queues


@pytest.fixture
def api_app(make_api_app):
    """The app on a new SQLite database."""
    return make_api_app()


@pytest.fixture
def make_user(api_app):
    """make_user(app=None, scopes=("predict",), admin=False) -> ApiUser."""
    count = 0

    def make(app=None, scopes=("predict",), admin=False) -> ApiUser:
        nonlocal count
        count += 1
        app = app or api_app
        with app.app_context():
            user = create_user(f"user{count}@example.com", "a long enough password", admin)
            token, _ = create_token(user.id, "tests", scopes)
        return ApiUser(user.id, user.email, token)

    return make


@pytest.fixture
def client(api_app):
    """A test client of the app."""
    return api_app.test_client()


class LiveServer:
    """The app served over real HTTP from a thread."""

    def __init__(self, app):
        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "LiveServer":
        self.thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self.server.shutdown()
        self.thread.join(timeout=10)


@pytest.fixture
def live_server(api_app):
    """The app on a real port, for clients that speak HTTP (curl, requests, schemathesis)."""
    with LiveServer(api_app) as server:
        yield server
