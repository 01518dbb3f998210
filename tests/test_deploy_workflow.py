"""The deployment workflow (.github/workflows/deploy.yml): its shape, and its own steps run
as the runner runs them (bash, the job's environment) against moto's SageMaker server.
actionlint checks it with the other workflows (tests/test_repository.py)."""

import json
import os
import re
import shutil
import subprocess
import sys

import pytest
import yaml

from sieve import registry
from sieve.config import ROOT
from sieve.store import CARD, MANIFEST, ModelStore
from tests.fixtures_sagemaker import ROLE
from tests.test_sagemaker_deploy import endpoint_state, queue_results, tags

WORKFLOW = ROOT / ".github" / "workflows" / "deploy.yml"


@pytest.fixture(scope="module")
def workflow() -> dict:
    return yaml.safe_load(WORKFLOW.read_text())


def steps(workflow: dict) -> dict:
    """The deploy job's steps by name (or by the action they use)."""
    return {step.get("name") or step["uses"].split("@")[0]: step
            for step in workflow["jobs"]["deploy"]["steps"]}


def test_triggers_permissions_and_credentials(workflow):
    """By hand and on a published release; an OIDC token and read-only contents; AWS
    credentials from a role, never from stored keys; Python from the pinned, hashed
    requirements."""
    on = workflow[True]  # YAML reads `on` as True
    assert set(on) == {"workflow_dispatch", "release"}
    assert on["release"]["types"] == ["published"]
    assert on["workflow_dispatch"]["inputs"]["ref"]["default"] == "production"
    assert workflow["permissions"] == {"contents": "read", "id-token": "write"}
    named = steps(workflow)
    credentials = named["AWS credentials (OIDC)"]
    assert credentials["uses"].startswith("aws-actions/configure-aws-credentials@")
    assert "role-to-assume" in credentials["with"]
    assert "AWS_ACCESS_KEY_ID" not in WORKFLOW.read_text()
    assert named["Install the pinned requirements"]["run"] == (
        "python -m pip install --require-hashes -r requirements.txt")
    order = list(named)
    assert order.index("Install the pinned requirements") < order.index("Deploy")
    assert order.index("AWS credentials (OIDC)") < order.index("Deploy")


def test_rollback_runs_when_a_step_after_the_deployment_fails(workflow):
    """The smoke test follows the deployment; a failure after a deployment that went
    through rolls the endpoint back."""
    named = steps(workflow)
    assert list(named)[-3:] == ["Deploy", "Smoke test", "Roll back"]
    condition = named["Roll back"]["if"]
    assert "failure()" in condition and "steps.deploy.outcome == 'success'" in condition
    assert named["Deploy"]["id"] == "deploy"
    image = re.search(r"invoke (\S+)", named["Smoke test"]["run"])[1]
    assert (ROOT / image).is_file()


def run_step(step: dict, env: dict) -> subprocess.CompletedProcess:
    """A step's script as the runner runs it: bash -eo pipefail, from the checkout."""
    return subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c",
                           step["run"]], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=180)


def test_steps_deploy_smoke_test_and_roll_back(workflow, aws, trained_store, tmp_path):
    """The job's Deploy step creates the endpoint with the production classifier and filter,
    a second run (another version) updates it, the smoke test's request reaches it, and
    the Roll back step returns it to the configuration before."""
    store = ModelStore(tmp_path / "models")
    shutil.copytree(trained_store.root, store.root)
    folder = store.open("classifier", "v1")
    store.publish("classifier", {p.name: p for p in folder.iterdir()
                                 if p.name not in (CARD, MANIFEST)},
                  store.card("classifier", "v1"))
    for name in ("classifier", "filter"):
        registry.promote(name, "v1", store=store)
    job_env = workflow["jobs"]["deploy"]["env"]
    secrets = {"MODEL_STORE_URL": str(store.root), "SAGEMAKER_ROLE_ARN": ROLE,
               "SAGEMAKER_S3_URL": f"s3://{aws['bucket']}/sagemaker"}
    env = {**os.environ,
           **{k: str(v) for k, v in job_env.items() if "${{" not in str(v)}, **secrets,
           "DEPLOY_REF": "production",
           "PATH": f"{os.path.dirname(sys.executable)}:{os.environ['PATH']}"}
    assert {k for k, v in job_env.items() if "${{" in str(v)} == {*secrets, "DEPLOY_REF"}
    named = steps(workflow)

    done = run_step(named["Deploy"], env)
    assert done.returncode == 0, done.stderr
    endpoint, _, model = endpoint_state(aws, job_env["SAGEMAKER_ENDPOINT_NAME"])
    first = endpoint["EndpointConfigName"]
    assert endpoint["EndpointStatus"] == "InService"
    assert {k: v for k, v in tags(aws, model["ModelArn"]).items() if k != "sieve:previous-config"
            } == {"sieve:classifier": "classifier v1", "sieve:filter": "filter v1"}

    done = run_step(named["Deploy"], {**env, "DEPLOY_REF": "v2"})  # workflow_dispatch input
    assert done.returncode == 0, done.stderr
    endpoint, _, model = endpoint_state(aws, job_env["SAGEMAKER_ENDPOINT_NAME"])
    assert tags(aws, model["ModelArn"])["sieve:classifier"] == "classifier v2"

    answer = {"predictions": [{"status": "done", "class": "Sneaker"}]}
    queue_results(aws, "endpoint-results", [{"Body": json.dumps(answer),
                                             "ContentType": "application/json"}])
    done = run_step(named["Smoke test"], env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == answer

    done = run_step(named["Roll back"], env)
    assert done.returncode == 0, done.stderr
    endpoint, _, _ = endpoint_state(aws, job_env["SAGEMAKER_ENDPOINT_NAME"])
    assert endpoint["EndpointConfigName"] == first
