"""The web tier's own package set (requirements-web.txt, what the web image installs):
it leaves torch and the workers' packages out, and the web tier runs with it alone.

The run uses tests/web_only/sitecustomize.py: with that folder on PYTHONPATH, importing a
module of an installed distribution that requirements-web.txt does not pin fails as if it
were not installed, so this machine's full environment stands in for the web image."""

import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest
import redis
import requests

from sieve.config import ROOT
from sieve.migrate import upgrade
from tests.fixtures_web import SECRET_KEY, LiveServer
from tests.images import noise
from tests.test_repository import read_pins

WEB_ONLY = Path(__file__).resolve().parent / "web_only"
# The packages that serve and train models: none of them belongs in the web image.
WORKER_ONLY = {"torch", "torchvision", "triton", "numpy", "matplotlib", "scikit-learn",
               "scikit-image", "flower", "sagemaker-core", "tqdm"}


def _web_only_env(**extra: str) -> dict:
    """The environment of a process that may import only requirements-web.txt's packages."""
    path = os.pathsep.join(filter(None, [str(WEB_ONLY), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path,
            "SIEVE_ONLY_PACKAGES_OF": str(ROOT / "requirements-web.txt"), **extra}


def _python(code: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=_web_only_env(**env),
                          capture_output=True, text=True, timeout=120, check=False)


def test_web_requirements_leave_out_torch_and_agree_with_the_runtime_pins():
    web, runtime = read_pins(ROOT / "requirements-web.txt"), read_pins(ROOT / "requirements.txt")
    assert not WORKER_ONLY & set(web), f"the web set pins {sorted(WORKER_ONLY & set(web))}"
    assert not [name for name in web if name.startswith(("nvidia-", "cuda-"))]
    assert {n: v for n, v in web.items() if runtime.get(n) != v} == {}, (
        "requirements-web.txt pins versions requirements.txt does not (make compile-deps)")
    assert set(web) < set(runtime)


def test_the_web_only_environment_refuses_what_the_web_set_leaves_out():
    """The check below can fail: torch is installed here, yet cannot be imported there."""
    done = _python("import torch")
    assert done.returncode == 1
    assert "No module named 'torch': torch is not in requirements-web.txt" in done.stderr
    assert _python("import flask, gevent, celery, boto3, PIL").returncode == 0


def test_every_module_of_the_web_tier_imports_without_torch(tmp_path):
    modules = [m.name for m in pkgutil.walk_packages([str(ROOT / "web")], "web.")]
    assert "web.api.predictions" in modules and "web.uploads" in modules
    code = (f"import importlib, sys\n"
            f"for name in {modules + ['workers', 'workers.client']!r}:\n"
            f"    importlib.import_module(name)\n"
            f"from web import create_app\n"
            f"create_app({{'TESTING': True, 'SECRET_KEY': {SECRET_KEY!r}}})\n"
            f"assert 'torch' not in sys.modules and 'numpy' not in sys.modules\n")
    done = _python(code, DATABASE_URL=f"sqlite:///{tmp_path / 'web.db'}")
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.fixture
def web_only_server(redis_server, sqlite_url, tmp_path):
    """The production command (gunicorn, gevent worker) with only the web set importable."""
    upgrade(sqlite_url)
    env = {"DATABASE_URL": sqlite_url, "REDIS_URL": redis_server.url,
           "MODEL_STORE_URL": str(tmp_path / "models"), "SECRET_KEY": SECRET_KEY,
           "SIEVE_ENV": "production", **_web_only_env()}
    server = LiveServer(env, tmp_path)
    yield server.start()
    server.stop()
    redis.Redis.from_url(redis_server.url).flushall()


def test_the_web_tier_serves_and_enqueues_with_only_its_packages(web_only_server, sqlite_url):
    from web import create_app
    from web.api.tokens import create_token
    from web.users import create_user

    app = create_app({"TESTING": True, "SECRET_KEY": SECRET_KEY, "DATABASE_URL": sqlite_url})
    with app.app_context():
        user = create_user("web@example.com", "a long enough password", False)
        token, _ = create_token(user.id, "tests", ("predict",))
    app.extensions["sieve"].listener.close()

    url, headers = web_only_server.url, {"Authorization": f"Bearer {token}"}
    for page in ("/healthz", "/login", "/register", "/api/v1/openapi.json"):
        assert requests.get(url + page, timeout=10).status_code == 200, page
    sent = requests.post(f"{url}/api/v1/predictions", headers=headers,
                         files={"image": ("noise.png", noise(), "image/png")}, timeout=30)
    assert sent.status_code == 202, sent.text
    answer = requests.get(url + sent.headers["Location"], headers=headers, timeout=10)
    assert answer.json()["state"] == "queued"
    queued = redis.Redis.from_url(web_only_server.env["REDIS_URL"]).llen("filter")
    assert queued == 1, "the upload's filter task is not on the filter queue"
    log = web_only_server.log()
    assert "ModuleNotFoundError" not in log and "Traceback" not in log, log[-3000:]
