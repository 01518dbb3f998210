"""Upload model archives, and create, update, roll back, invoke and delete endpoints.

These calls go through boto3's `sagemaker`, `sagemaker-runtime` and `s3` clients:
sagemaker-core's resource classes re-read every resource after creating it and validate
the description strictly, which fails on S3-compatible test servers that answer with
empty optional structures (docs/deployment.md says more). Each endpoint update makes a
new model and endpoint configuration, named `<endpoint>-<stamp>`; the one it replaces is
kept and remembered in the endpoint's `sieve:previous-config` tag, so a failed update (or
`rollback`) switches back to it.
"""

import base64
import json
import mimetypes
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import boto3
import botocore.exceptions
from botocore.config import Config

from training.sagemaker.config import SageMakerError, SageMakerSettings

PREVIOUS = "sieve:previous-config"
SETTLED = {"InService", "Failed", "UpdateRollbackFailed", "OutOfService"}
VARIANT = "AllTraffic"


@dataclass
class Clients:
    """The boto3 clients one command uses."""

    sagemaker: object
    runtime: object
    s3: object

    @classmethod
    def create(cls, settings: SageMakerSettings) -> "Clients":
        """Clients for the settings' region (and AWS_ENDPOINT_URL, for test servers)."""
        config = Config(retries={"max_attempts": 4, "mode": "standard"},
                        s3={"addressing_style": "path"} if settings.aws_endpoint_url else None)

        def make(service: str):
            return boto3.client(service, region_name=settings.region, config=config,
                                endpoint_url=settings.aws_endpoint_url)

        return cls(make("sagemaker"), make("sagemaker-runtime"), make("s3"))


def split_s3(url: str) -> tuple[str, str]:
    """("bucket", "key/prefix") of an s3:// URL."""
    match = re.fullmatch(r"s3://([^/]+)/?(.*)", url)
    if not match:
        raise SageMakerError(f"{url}: expected s3://bucket/prefix")
    return match[1], match[2]


def upload(clients: Clients, archive: Path, s3_url: str, label: str) -> str:
    """Upload an archive to `<s3_url>/<label>-<sha256 prefix>/model.tar.gz`; its URL.
    The same archive always lands on the same key, so uploading again changes nothing."""
    from training.sagemaker.package import sha256

    bucket, prefix = split_s3(s3_url)
    key = "/".join(p for p in (prefix, f"{label}-{sha256(archive)[:12]}", archive.name) if p)
    clients.s3.upload_file(str(archive), bucket, key)
    return f"s3://{bucket}/{key}"


def stamp(label: str) -> str:
    """`<label>-<UTC time>-<random>`, a valid SageMaker name of at most 63 characters."""
    suffix = f"{datetime.now(UTC):%Y%m%d%H%M%S}-{uuid.uuid4().hex[:4]}"
    return f"{re.sub(r'[^a-zA-Z0-9-]', '-', label)[:63 - len(suffix) - 1]}-{suffix}"


def describe(clients: Clients, endpoint: str) -> dict | None:
    """DescribeEndpoint, or None when there is no such endpoint."""
    try:
        return clients.sagemaker.describe_endpoint(EndpointName=endpoint)
    except botocore.exceptions.ClientError as exc:
        if "Could not find endpoint" in str(exc):
            return None
        raise


def create_config(clients: Clients, settings: SageMakerSettings, endpoint: str,
                  model_data: str, instance_type: str, instance_count: int = 1,
                  async_output: str | None = None, tags: dict | None = None) -> str:
    """A new model and endpoint configuration serving `model_data`; the config's name."""
    name = stamp(endpoint)
    tag_list = [{"Key": k, "Value": str(v)} for k, v in (tags or {}).items()]
    clients.sagemaker.create_model(
        ModelName=name, ExecutionRoleArn=settings.require_role(), Tags=tag_list,
        PrimaryContainer={"Image": settings.inference_image(instance_type),
                          "ModelDataUrl": model_data,
                          "Environment": {"SAGEMAKER_PROGRAM": "inference.py",
                                          "SAGEMAKER_REGION": settings.region}})
    extra = {}
    if async_output:
        extra["AsyncInferenceConfig"] = {
            "OutputConfig": {"S3OutputPath": async_output.rstrip("/") + "/output/",
                             "S3FailurePath": async_output.rstrip("/") + "/failure/"},
            "ClientConfig": {"MaxConcurrentInvocationsPerInstance": 4}}
    clients.sagemaker.create_endpoint_config(
        EndpointConfigName=name, Tags=tag_list, **extra,
        ProductionVariants=[{"VariantName": VARIANT, "ModelName": name,
                             "InitialInstanceCount": instance_count,
                             "InstanceType": instance_type}])
    return name


def wait(clients: Clients, endpoint: str, timeout: float = 1800, poll: float = 15,
         echo: Callable[[str], None] = print) -> dict:
    """Poll until the endpoint settles (InService, Failed, ...); report each status change
    and the time spent. Returns the last description."""
    started, last = time.monotonic(), None
    while True:
        state = describe(clients, endpoint)
        if state is None:
            raise SageMakerError(f"endpoint {endpoint} does not exist")
        status = state["EndpointStatus"]
        if status != last:
            echo(f"endpoint {endpoint}: {status} ({time.monotonic() - started:.0f} s)")
            last = status
        if status in SETTLED:
            return state
        if time.monotonic() - started > timeout:
            raise SageMakerError(f"endpoint {endpoint} is still {status} after {timeout:g} s")
        time.sleep(poll)


def deploy(clients: Clients, settings: SageMakerSettings, endpoint: str, model_data: str,
           instance_type: str | None = None, instance_count: int = 1,
           async_output: str | None = None, tags: dict | None = None, timeout: float = 1800,
           poll: float = 15, echo: Callable[[str], None] = print) -> dict:
    """Create the endpoint, or update it to a new configuration; when the update fails,
    switch back to the configuration it had. Returns the endpoint's final description."""
    config = create_config(clients, settings, endpoint, model_data,
                           instance_type or settings.instance_type, instance_count,
                           async_output, tags)
    current = describe(clients, endpoint)
    if current is None:
        echo(f"creating endpoint {endpoint} with {config}")
        clients.sagemaker.create_endpoint(EndpointName=endpoint, EndpointConfigName=config)
        state = wait(clients, endpoint, timeout, poll, echo)
        if state["EndpointStatus"] != "InService":
            raise SageMakerError(f"endpoint {endpoint} is {state['EndpointStatus']}: "
                                 f"{state.get('FailureReason', 'no reason given')}")
        return state
    previous = current["EndpointConfigName"]
    echo(f"updating endpoint {endpoint}: {previous} -> {config}")
    try:
        clients.sagemaker.update_endpoint(EndpointName=endpoint, EndpointConfigName=config)
    except botocore.exceptions.ClientError as exc:
        discard(clients, config)
        raise SageMakerError(f"SageMaker refused the update of {endpoint}, which still "
                             f"serves {previous}: {exc}") from exc
    state = wait(clients, endpoint, timeout, poll, echo)
    if state["EndpointStatus"] == "InService" and state["EndpointConfigName"] == config:
        set_previous(clients, state["EndpointArn"], previous)
        return state
    reason = state.get("FailureReason") or state["EndpointStatus"]
    echo(f"the update failed ({reason}): switching back to {previous}")
    state = switch(clients, endpoint, previous, timeout, poll, echo)
    discard(clients, config)
    raise SageMakerError(f"the update of {endpoint} failed ({reason}); it serves {previous} "
                         f"again ({state['EndpointStatus']})")


def switch(clients: Clients, endpoint: str, config: str, timeout: float = 1800,
           poll: float = 15, echo: Callable[[str], None] = print) -> dict:
    """Make the endpoint serve `config`. A Failed endpoint can only be deleted, so it is
    deleted and created again; one that SageMaker already returned to `config` is left."""
    state = describe(clients, endpoint)
    if state and state["EndpointStatus"] == "InService" and \
            state["EndpointConfigName"] == config:
        return state
    if state and state["EndpointStatus"] == "Failed":
        echo(f"endpoint {endpoint} is Failed: deleting it and creating it again with {config}")
        tags = clients.sagemaker.list_tags(ResourceArn=state["EndpointArn"])["Tags"]
        clients.sagemaker.delete_endpoint(EndpointName=endpoint)
        _wait_gone(clients, endpoint, timeout, poll)
        clients.sagemaker.create_endpoint(EndpointName=endpoint, EndpointConfigName=config,
                                          Tags=[t for t in tags
                                                if not t["Key"].startswith("aws:")])
    else:
        clients.sagemaker.update_endpoint(EndpointName=endpoint, EndpointConfigName=config)
    return wait(clients, endpoint, timeout, poll, echo)


def rollback(clients: Clients, endpoint: str, timeout: float = 1800, poll: float = 15,
             echo: Callable[[str], None] = print) -> dict:
    """Switch the endpoint back to the configuration its last update replaced."""
    state = describe(clients, endpoint)
    if state is None:
        raise SageMakerError(f"endpoint {endpoint} does not exist")
    previous = previous_config(clients, state["EndpointArn"])
    if not previous:
        raise SageMakerError(f"endpoint {endpoint} has no earlier configuration to go back to")
    current = state["EndpointConfigName"]
    echo(f"rolling back endpoint {endpoint}: {current} -> {previous}")
    state = switch(clients, endpoint, previous, timeout, poll, echo)
    set_previous(clients, state["EndpointArn"], current)
    return state


def previous_config(clients: Clients, arn: str) -> str | None:
    """The configuration the endpoint's last update (or rollback) replaced."""
    tags = clients.sagemaker.list_tags(ResourceArn=arn)["Tags"]
    found = [t["Value"] for t in tags if t["Key"] == PREVIOUS]
    return found[-1] if found else None  # the newest, should a server keep older ones


def set_previous(clients: Clients, arn: str, config: str) -> None:
    """Remember `config` as the one to roll back to."""
    clients.sagemaker.add_tags(ResourceArn=arn, Tags=[{"Key": PREVIOUS, "Value": config}])


def discard(clients: Clients, config: str) -> None:
    """Delete an endpoint configuration and its model (named alike), if they exist."""
    for call, key in ((clients.sagemaker.delete_endpoint_config, "EndpointConfigName"),
                      (clients.sagemaker.delete_model, "ModelName")):
        try:
            call(**{key: config})
        except botocore.exceptions.ClientError as exc:
            if "Could not find" not in str(exc):
                raise


def _wait_gone(clients: Clients, endpoint: str, timeout: float, poll: float) -> None:
    """Poll until the endpoint no longer exists."""
    started = time.monotonic()
    while describe(clients, endpoint) is not None:
        if time.monotonic() - started > timeout:
            raise SageMakerError(f"endpoint {endpoint} was not deleted within {timeout:g} s")
        time.sleep(poll)


def delete(clients: Clients, endpoint: str, echo: Callable[[str], None] = print) -> list[str]:
    """Delete the endpoint, its configuration and the one kept for rollback, with their
    models; returns the configurations deleted."""
    state = describe(clients, endpoint)
    if state is None:
        raise SageMakerError(f"endpoint {endpoint} does not exist")
    configs = [state["EndpointConfigName"]]
    previous = previous_config(clients, state["EndpointArn"])
    if previous and previous not in configs:
        configs.append(previous)
    clients.sagemaker.delete_endpoint(EndpointName=endpoint)
    echo(f"deleted endpoint {endpoint}")
    for config in configs:
        discard(clients, config)
        echo(f"deleted endpoint configuration and model {config}")
    return configs


def content_type(path: Path) -> str:
    """The request's content type for an image file."""
    kind = mimetypes.guess_type(path.name)[0]
    return kind if kind in ("image/png", "image/jpeg") else "application/x-image"


def request_body(image: Path, as_json: bool = False, which: str | None = None
                 ) -> tuple[bytes, str]:
    """The image as the request body: its bytes, or base64 in JSON (with the model to run,
    `which`: both, filter or classifier)."""
    if not (as_json or which):
        return image.read_bytes(), content_type(image)
    document = {"image": base64.b64encode(image.read_bytes()).decode()}
    if which:
        document["model"] = which
    return json.dumps(document).encode(), "application/json"


def invoke(clients: Clients, endpoint: str, image: Path, as_json: bool = False,
           which: str | None = None) -> dict:
    """A real-time prediction for one image file."""
    body, kind = request_body(image, as_json, which)
    answer = clients.runtime.invoke_endpoint(EndpointName=endpoint, Body=body,
                                             ContentType=kind, Accept="application/json")
    return _json(answer["Body"].read())


def invoke_async(clients: Clients, endpoint: str, image: Path, s3_url: str,
                 as_json: bool = False, which: str | None = None, timeout: float = 900,
                 poll: float = 5) -> dict:
    """Upload the request, queue an asynchronous prediction, wait for its result in S3."""
    body, kind = request_body(image, as_json, which)
    bucket, prefix = split_s3(s3_url)
    suffix = ".json" if kind == "application/json" else image.suffix
    key = "/".join(p for p in (prefix, "async-inputs", f"{uuid.uuid4().hex}{suffix}") if p)
    clients.s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType=kind)
    answer = clients.runtime.invoke_endpoint_async(
        EndpointName=endpoint, InputLocation=f"s3://{bucket}/{key}", ContentType=kind,
        Accept="application/json")
    locations = {"output": answer["OutputLocation"],
                 "failure": answer.get("FailureLocation")}
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        for outcome, url in locations.items():
            if url and (body := _read_s3(clients, url)) is not None:
                if outcome == "failure":
                    raise SageMakerError(f"the asynchronous prediction failed: {body.decode()}")
                return _json(body)
        time.sleep(poll)
    raise SageMakerError(f"no result at {locations['output']} after {timeout:g} s")


def _read_s3(clients: Clients, url: str) -> bytes | None:
    """An object's bytes, or None while it does not exist."""
    bucket, key = split_s3(url)
    try:
        return clients.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except botocore.exceptions.ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
            return None
        raise


def _json(body: bytes) -> dict:
    """The endpoint's JSON answer, or its text when it is not JSON."""
    try:
        return json.loads(body)
    except ValueError:
        return {"raw": body.decode(errors="replace")}
