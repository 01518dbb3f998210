"""Fixtures of the web tier: the app on temporary resources (`app`), its test client
(`web_client`) and CLI `runner`, an `auth` helper, the app under gunicorn's gevent worker
(`web_server`), and headless Chromium (`browser_factory`, `screenshot`)."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import redis
import requests

from bench.processes import free_port, terminate, wait_for
from sieve.config import ROOT
from web import create_app

PASSWORD = "correct horse battery"
SECRET_KEY = "test-secret-key-0123456789abcdef"
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
# Screenshots of the browser tests, kept as artifacts (CI uploads the folder).
ARTIFACTS = Path(os.environ.get("SIEVE_TEST_ARTIFACTS", ROOT / "artifacts"))


def csrf_token(html: str) -> str:
    """The CSRF token of the first form on a page."""
    match = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', html)
    assert match, "no CSRF token on the page"
    return match.group(1)


@pytest.fixture
def app(database_url, redis_server):
    """The app on a new database (SQLite, then PostgreSQL) and the private Redis."""
    app = create_app({"TESTING": True, "SECRET_KEY": SECRET_KEY,
                      "DATABASE_URL": database_url, "REDIS_URL": redis_server.url})
    yield app
    app.extensions["sieve"].db.dispose()
    app.extensions["sieve"].listener.close()
    # Queued messages and login counters stay with the test that made them.
    redis.Redis.from_url(redis_server.url).flushall()


@pytest.fixture
def web_client(app):
    """A test client of the app (keeps cookies between requests)."""
    return app.test_client()


@pytest.fixture
def runner(app):
    """A runner of the app's `flask` commands."""
    return app.test_cli_runner()


class AuthActions:
    """Register, log in and log out through the real forms, CSRF tokens included."""

    def __init__(self, client):
        self.client = client

    def token(self, path: str) -> str:
        """The CSRF token of the form at `path`."""
        return csrf_token(self.client.get(path).get_data(as_text=True))

    def register(self, email: str = "ada@example.com", password: str = PASSWORD,
                 confirm: str | None = None):
        """Post the registration form."""
        return self.client.post("/register", data={
            "csrf_token": self.token("/register"), "email": email, "password": password,
            "confirm": password if confirm is None else confirm})

    def login(self, email: str = "ada@example.com", password: str = PASSWORD):
        """Post the login form."""
        return self.client.post("/login", data={
            "csrf_token": self.token("/login"), "email": email, "password": password})

    def logout(self):
        """Post the logout button's form."""
        return self.client.post("/logout", data={"csrf_token": self.token("/login")})


@pytest.fixture
def auth(web_client):
    """Account actions on the `web_client`."""
    return AuthActions(web_client)


class LiveServer:
    """The app under the production command (gunicorn, gevent worker) on a free port."""

    def __init__(self, env: dict, folder: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, **env}
        self.log_path = folder / "gunicorn.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> "LiveServer":
        """Start gunicorn and wait until the app answers."""
        log = open(self.log_path, "ab")  # noqa: SIM115 - lives with the process
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-k", "gevent", "-w", "1", "-b",
             f"127.0.0.1:{self.port}", "--graceful-timeout", "5", "web:create_app()"],
            cwd=ROOT, env=self.env, stdout=log, stderr=log)
        wait_for(self._answers, 60, f"gunicorn on port {self.port}", interval=0.2)
        return self

    def _answers(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"gunicorn exited:\n{self.log()[-3000:]}")
        try:
            return requests.get(f"{self.url}/login", timeout=2).ok
        except (requests.ConnectionError, requests.Timeout):  # still booting its worker
            return False

    def log(self) -> str:
        """What gunicorn and the app logged."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        """Stop gunicorn (killed if it takes longer than 15 s)."""
        if self.process:
            terminate(self.process)


@pytest.fixture
def web_server(settings, tmp_path):
    """The app under gunicorn on the test settings' database and Redis."""
    server = LiveServer({"DATABASE_URL": settings.database_url, "REDIS_URL": settings.redis_url,
                         "SECRET_KEY": SECRET_KEY, "SIEVE_ENV": "production"}, tmp_path)
    yield server.start()
    server.stop()


def _missing_browser() -> None:
    """Chromium is missing: a failure in CI, a skip elsewhere."""
    message = "chromium and chromium-driver (Debian packages) are needed for browser tests"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture
def browser_factory(request):
    """Start headless Chromium sessions: browser_factory(javascript=True)."""
    if not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)):
        _missing_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    started = []

    def start(javascript: bool = True):
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                         "--disable-gpu", "--window-size=1100,900"):
            options.add_argument(argument)
        if not javascript:
            options.add_experimental_option(
                "prefs", {"profile.managed_default_content_settings.javascript": 2})
        driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
        driver.set_page_load_timeout(30)
        started.append(driver)
        return driver

    yield start
    for driver in started:
        driver.quit()


@pytest.fixture
def screenshot(request):
    """screenshot(driver, "step"): save the browser's view under artifacts/screenshots."""
    folder = ARTIFACTS / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    test = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)

    def take(driver, step: str) -> Path:
        path = folder / f"{test}-{step}.png"
        driver.save_screenshot(str(path))
        return path

    return take


@pytest.fixture
def production(sqlite_url, redis_server, tmp_path):
    """production(**env): the app under gunicorn with gevent, SIEVE_ENV=production."""
    from sieve.migrate import upgrade

    upgrade(sqlite_url)
    servers = []

    def start(**env: str) -> LiveServer:
        folder = tmp_path / f"server{len(servers)}"
        folder.mkdir()
        server = LiveServer({"DATABASE_URL": sqlite_url, "REDIS_URL": redis_server.url,
                             "SECRET_KEY": SECRET_KEY, "SIEVE_ENV": "production", **env},
                            folder)
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        server.stop()


def session_cookie(response: requests.Response) -> str:
    """The value of the session cookie a response sets (Secure: sent by hand over HTTP)."""
    match = re.search(r"session=([^;]+)", response.headers.get("Set-Cookie", ""))
    assert match, response.headers
    return match.group(1)


def sign_up(url: str, email: str, headers: dict | None = None) -> str:
    """Register over HTTP; the session cookie of the new account."""
    page = requests.get(f"{url}/register", timeout=10)
    answer = requests.post(f"{url}/register", allow_redirects=False, timeout=10,
                           headers={"Cookie": f"session={session_cookie(page)}",
                                    **(headers or {})},
                           data={"csrf_token": csrf_token(page.text), "email": email,
                                 "password": PASSWORD, "confirm": PASSWORD})
    assert answer.status_code == 302, answer.text
    return session_cookie(answer)
