"""Workers record the queues they consume on Redis; the training page, the API and the
command line say so when no worker listens on the `training` queue (a run would wait)."""

import os
import subprocess
import sys

import redis

from bench.processes import wait_for
from sieve import consumers
from sieve.config import ROOT
from tests.fixtures_web import PASSWORD, csrf_token
from web.users import create_user

RUNS = "/api/v1/training-runs"


def test_the_api_and_the_page_say_when_no_training_worker_listens(
        make_api_app, make_user, redis_server, monkeypatch):
    monkeypatch.setattr(consumers, "CACHE_SECONDS", 0.0)  # each request reads Redis
    app = make_api_app()
    admin = make_user(app, scopes=("train",), admin=True)
    with app.app_context():
        create_user("page-admin@example.com", PASSWORD, is_admin=True)
    api, browser = app.test_client(), app.test_client()
    page = browser.get("/login").get_data(as_text=True)
    browser.post("/login", data={"csrf_token": csrf_token(page),
                                 "email": "page-admin@example.com", "password": PASSWORD})

    answer = api.post(RUNS, headers=admin.headers, json={"model": "filter", "epochs": 1})
    assert answer.status_code == 202
    assert "no worker listens on the training queue" in answer.get_json()["warning"]
    location = answer.headers["Location"]
    assert "warning" in api.get(location, headers=admin.headers).get_json()
    runs_page = browser.get("/training").get_data(as_text=True)
    assert 'id="no-training-worker"' in runs_page
    assert "celery -A workers worker -Q training" in runs_page
    run_page = browser.get(f"/training/{answer.get_json()['id']}").get_data(as_text=True)
    assert 'id="no-training-worker"' in run_page

    client = redis.Redis.from_url(redis_server.url)
    consumers.record(client, "serving@host", ["filter", "classify"])
    assert "warning" in api.get(location, headers=admin.headers).get_json()  # wrong queue
    consumers.record(client, "trainer@host", ["training"])
    assert "warning" not in api.get(location, headers=admin.headers).get_json()
    assert 'id="no-training-worker"' not in browser.get("/training").get_data(as_text=True)
    consumers.forget(client, "trainer@host", ["training"])
    assert "warning" in api.get(location, headers=admin.headers).get_json()


def test_an_entry_older_than_the_expiry_does_not_count(redis_server):
    client = redis.Redis.from_url(redis_server.url)
    client.zadd(consumers.key("training"), {"dead@host": 1.0})  # recorded long ago
    assert consumers.listening(client, "training") == 0
    consumers.record(client, "alive@host", ["training"])
    assert consumers.listening(client, "training") == 1
    assert client.zscore(consumers.key("training"), "dead@host") is None  # cleaned up
    client.delete(consumers.key("training"))


def test_the_answer_is_cached_and_an_unreachable_redis_says_nothing():
    down = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
    assert consumers.cached_listening(down, "redis://127.0.0.1:1/0", "training") is None


def test_real_workers_record_their_queues_and_withdraw_them(start_worker, redis_server):
    client = redis.Redis.from_url(redis_server.url)
    trainer = start_worker("trainer", queues="training")
    wait_for(lambda: consumers.listening(client, "training") == 1, 10,
             "the training worker to record its queue")
    members = client.zrange(consumers.key("training"), 0, -1)
    assert len(members) == 1 and members[0].decode().startswith("trainer@")
    assert consumers.listening(client, "filter") == 0
    trainer.stop()  # warm shutdown: it stops counting at once, not after the expiry
    assert consumers.listening(client, "training") == 0


def test_the_command_line_warns_on_submit(sqlite_url, redis_server):
    from sieve.migrate import upgrade

    upgrade(sqlite_url)
    env = {**os.environ, "REDIS_URL": redis_server.url, "CELERY_BROKER_URL": redis_server.url,
           "CELERY_RESULT_BACKEND": redis_server.url, "DATABASE_URL": sqlite_url}
    redis.Redis.from_url(redis_server.url).delete(consumers.key("training"))
    done = subprocess.run([sys.executable, "-m", "workers.runs", "submit", "--model", "filter"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "warning: no worker listens on the training queue" in done.stderr
    assert done.stdout.strip()  # the run's id, as before
