"""moto's server for the SageMaker tests, the settings that point at it, and the command
line run with quick polling."""

import uuid

import boto3
import pytest

from bench.processes import S3Server
from training.sagemaker.__main__ import main

ROLE = "arn:aws:iam::123456789012:role/sieve-sagemaker"
IMAGE = "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-inference:2.6-cpu-py312"


@pytest.fixture(scope="module")
def aws_server(tmp_path_factory):
    """moto's server (S3, SageMaker, SageMaker runtime) in its own process."""
    server = S3Server(tmp_path_factory.mktemp("moto-sagemaker"), module="tests.moto_sagemaker")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def aws(aws_server, monkeypatch):
    """Settings pointing at moto, and a new bucket for SAGEMAKER_S3_URL."""
    bucket = f"sieve-sm-{uuid.uuid4().hex[:12]}"
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": aws_server.url,
           "SAGEMAKER_ROLE_ARN": ROLE, "SAGEMAKER_S3_URL": f"s3://{bucket}/sagemaker"}
    for name in ("SAGEMAKER_REGION", "AWS_REGION", "SAGEMAKER_IMAGE_URI",
                 "SAGEMAKER_INSTANCE_TYPE", "SAGEMAKER_ENDPOINT_NAME"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    s3 = boto3.client("s3", endpoint_url=aws_server.url)
    s3.create_bucket(Bucket=bucket)
    return {"bucket": bucket, "s3": s3, "url": aws_server.url,
            "sm": boto3.client("sagemaker", endpoint_url=aws_server.url)}


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    """Run the command line with quick polling; exit status, stdout, stderr."""
    code = main([*argv, "--poll", "0.05", "--timeout", "30"])
    out, err = capsys.readouterr()
    return code, out, err
