"""`make run` as a user runs it: from an empty model store and no Redis it trains the
default models within a time budget, starts Redis, both workers and the web tier, serves a
prediction, and Ctrl-C stops every process it started, Redis included."""

import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import redis
import requests

from bench.processes import free_port, wait_for
from sieve import consumers
from tests.images import png

ROOT = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]
READY_TIMEOUT = 1200  # two short trainings and three process starts on 2 busy cores
STOP_TIMEOUT = 90


def _sessions_alive(pids: list[int]) -> list[str]:
    """The processes still running in the sessions led by `pids` (children included)."""
    alive = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited while we looked
        state, session = fields[0], int(fields[3])
        if session in pids and state != "Z":
            alive.append(f"{stat.parent.name} ({state})")
    return alive


@pytest.fixture
def run_env(tmp_path):
    """A private Redis port (nothing listens there), database, model store and web port."""
    if not shutil.which("make") or not shutil.which("redis-server"):
        pytest.skip("make and redis-server are needed to run `make run`")
    return {**os.environ,
            "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
            "DATABASE_URL": f"sqlite:///{tmp_path / 'sieve.db'}",
            "MODEL_STORE_URL": str(tmp_path / "models"),
            "FLASK_RUN_HOST": "127.0.0.1", "FLASK_RUN_PORT": str(free_port()),
            "SIEVE_WORKER_METRICS_PORT": "0", "SIEVE_MODEL_RELOAD_INTERVAL": "1"}


def test_make_run_serves_a_prediction_and_ctrl_c_stops_everything(run_env, tmp_path, fashion):
    output = tmp_path / "make-run.out"
    with open(output, "wb") as out:
        # -o: the packages are installed already (the test must not reinstall them).
        make = subprocess.Popen(
            ["make", "--no-print-directory", "-o", ".venv/.installed-requirements.txt", "run",
             "TRAIN_SECONDS=4",
             "TRAIN_ARGS=--subset 3000 --optimizer adam --val-size 1000 --upload-calibration 100"],
            cwd=ROOT, env=run_env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True)  # its own process group, as a terminal's foreground job
    text = lambda: output.read_text(errors="replace")  # noqa: E731
    try:
        def ready():
            assert make.poll() is None, f"make run exited early:\n{text()}"
            return "ready: open" in text()
        wait_for(ready, READY_TIMEOUT, "make run to say it is ready", interval=1)
        log = text()
        for stage in range(1, 7):
            assert f"[{stage}/6]" in log, f"no progress line for stage {stage}:\n{log}"
        assert "classifier: none published; training one (4 s budget)" in log
        assert "epoch 1: train loss" in log  # the training's own progress reaches the user
        assert f"redis: started redis-server at {run_env['REDIS_URL']}" in log
        pids = [int(p) for p in re.findall(r"pid (\d+)", log)]
        assert len(pids) == 5, log  # redis, serving, training and webhooks workers, web

        base = f"http://127.0.0.1:{run_env['FLASK_RUN_PORT']}"
        flask = [str(ROOT / ".venv/bin/flask"), "--app", "web"]
        subprocess.run([*flask, "create-user", "me@example.com", "--password",
                        "a long enough password"], cwd=ROOT, env=run_env, check=True,
                       capture_output=True, timeout=120)
        token = subprocess.run([*flask, "tokens", "create", "--email", "me@example.com"],
                               cwd=ROOT, env=run_env, check=True, capture_output=True,
                               text=True, timeout=120).stdout.split()[-1]
        image = png(fashion.test.images[0, 0].numpy())
        auth = {"Authorization": f"Bearer {token}"}
        answer = requests.post(f"{base}/api/v1/predictions?wait=30", headers=auth,
                               files={"image": ("shirt.png", image, "image/png")}, timeout=60)
        assert answer.status_code in (201, 202), answer.text
        poll = f"{base}{answer.headers['Location']}?wait=30"
        final = wait_for(lambda: (p := requests.get(poll, headers=auth, timeout=60).json())
                         ["state"] in ("done", "rejected", "failed") and p, 300,
                         "the first prediction to be final", interval=0.5)
        assert final["state"] in ("done", "rejected"), final  # through the models
        client = redis.Redis.from_url(run_env["REDIS_URL"])
        assert consumers.listening(client, "training") == 1  # the training worker is up
    finally:
        if make.poll() is None:
            os.killpg(make.pid, signal.SIGINT)  # Ctrl-C: the terminal signals the job's group
        try:
            make.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(make.pid, signal.SIGKILL)
            pytest.fail(f"make run did not stop within {STOP_TIMEOUT} s of Ctrl-C:\n{text()}")
    log = text()
    assert "SIGINT: stopping" in log, log
    assert re.search(r"^run: +\d+ s stopped$", log, re.M), log
    deadline = time.monotonic() + 10
    while _sessions_alive(pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _sessions_alive(pids), f"left running: {_sessions_alive(pids)}\n{log}"
    with pytest.raises(redis.ConnectionError):
        redis.Redis.from_url(run_env["REDIS_URL"], socket_connect_timeout=1).ping()
