"""Helpers for tests that need model versions in a store of their own, and S3 buckets
on the test S3 servers."""

import json
import uuid

import boto3

from sieve.store import CARD, MANIFEST, Store

# What the S3 servers of the tests accept, and boto3 sends.
S3_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
          "AWS_DEFAULT_REGION": "us-east-1"}
# The S3 servers the S3 tests run against (fixtures `<name>_s3_server` in conftest.py).
S3_SERVERS = ("moto", "seaweedfs")


def copy_version(source: Store, target: Store, name: str, version: str | None = None) -> str:
    """Publish a version of `source` (the latest by default) again in `target`."""
    folder = source.open(name, version)
    files = {p.name: p for p in folder.iterdir() if p.name not in (MANIFEST, CARD)}
    return target.publish(name, files, json.loads((folder / CARD).read_text()))


def point_boto3_at(endpoint_url: str, tmp_path, monkeypatch, credentials: dict = S3_ENV) -> dict:
    """Set the environment that points boto3 at a test S3 server with `credentials`
    (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION), with a fresh model
    cache; returns it."""
    env = {**credentials, "AWS_ENDPOINT_URL": endpoint_url,
           "SIEVE_MODEL_CACHE_DIR": str(tmp_path / "model-cache")}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    # boto3's default session keeps the credentials it read first in this process, and
    # SeaweedFS (unlike moto) refuses a key it does not know: a fresh session reads these,
    # and the test's end brings the old one back.
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
    return env


def new_bucket(endpoint_url: str) -> str:
    """A new, empty bucket on the S3 server at `endpoint_url`, as a MODEL_STORE_URL."""
    bucket = f"sieve-test-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=endpoint_url).create_bucket(Bucket=bucket)
    return f"s3://{bucket}/models"
