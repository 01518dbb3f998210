"""Package, upload, deploy, update (and roll back), invoke and delete, against moto's
server over HTTP (tests.moto_sagemaker adds the UpdateEndpoint call moto lacks)."""

import io
import json
import tarfile
import urllib.request

import pytest

from tests.fixtures_sagemaker import IMAGE, ROLE, cli


@pytest.fixture
def models(aws, trained_store, monkeypatch):
    """The session's model store as MODEL_STORE_URL."""
    monkeypatch.setenv("MODEL_STORE_URL", str(trained_store.root))
    return trained_store


def endpoint_state(aws, name: str) -> tuple[dict, dict, dict]:
    """The endpoint, its configuration and its model, as SageMaker describes them."""
    endpoint = aws["sm"].describe_endpoint(EndpointName=name)
    config = aws["sm"].describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])
    model = aws["sm"].describe_model(ModelName=config["ProductionVariants"][0]["ModelName"])
    return endpoint, config, model


def tags(aws, arn: str) -> dict:
    return {t["Key"]: t["Value"] for t in aws["sm"].list_tags(ResourceArn=arn)["Tags"]}


def test_package_and_upload(aws, models, capsys, tmp_path):
    """`package` writes the archive; `upload` puts it under the S3 prefix, by content."""
    archive = tmp_path / "model.tar.gz"
    code, out, _ = cli(capsys, "package", "classifier", "v1", "--filter", "-o", str(archive))
    assert code == 0 and json.loads(out)["models"]["filter"]["version"] == "v1"
    code, url, _ = cli(capsys, "upload", str(archive), "--label", "classifier-v1")
    url = url.strip()
    assert code == 0 and url.startswith(f"s3://{aws['bucket']}/sagemaker/models/classifier-v1-")
    key = url.split("/", 3)[3]
    body = aws["s3"].get_object(Bucket=aws["bucket"], Key=key)["Body"].read()
    assert body == archive.read_bytes()


def test_deploy_update_rollback_delete(aws, models, capsys):
    """Create, update, a failed update switched back, rollback, invoke, delete."""
    code, out, err = cli(capsys, "deploy", "--endpoint", "sieve-test", "--filter")
    assert code == 0, err
    assert "sieve-test: InService" in out
    endpoint, config, model = endpoint_state(aws, "sieve-test")
    first = endpoint["EndpointConfigName"]
    assert endpoint["EndpointStatus"] == "InService"
    variant = config["ProductionVariants"][0]
    assert (variant["InstanceType"], variant["InitialInstanceCount"]) == ("ml.m5.large", 1)
    assert "AsyncInferenceConfig" not in config or not config["AsyncInferenceConfig"]
    container = model["PrimaryContainer"]
    assert container["Image"] == IMAGE and model["ExecutionRoleArn"] == ROLE
    assert container["Environment"]["SAGEMAKER_PROGRAM"] == "inference.py"
    assert tags(aws, model["ModelArn"])["sieve:classifier"] == "classifier v1"
    bucket, key = container["ModelDataUrl"][5:].split("/", 1)
    assert bucket == aws["bucket"] and key.startswith("sagemaker/models/classifier-v1-filter-v1")
    data = aws["s3"].get_object(Bucket=bucket, Key=key)["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        assert {"classifier.pt", "filter.pt", "code/inference.py"} <= set(tar.getnames())

    # An update to a new configuration; the old one is kept for rollback.
    code, out, err = cli(capsys, "deploy", "--endpoint", "sieve-test", "--instance-type",
                         "ml.c5.xlarge")
    assert code == 0, err
    endpoint, config, _ = endpoint_state(aws, "sieve-test")
    second = endpoint["EndpointConfigName"]
    assert second != first and config["ProductionVariants"][0]["InstanceType"] == "ml.c5.xlarge"
    assert tags(aws, endpoint["EndpointArn"])["sieve:previous-config"] == first

    # An update that fails: the endpoint goes back to what it served, the new parts go.
    models_before = {m["ModelName"] for m in aws["sm"].list_models()["Models"]}
    code, out, err = cli(capsys, "deploy", "--endpoint", "sieve-test", "--image-uri",
                         "example.com/sieve:fails-update")
    assert code == 2 and "update of sieve-test failed" in err and "health check" in err
    assert "switching back to " + second in out
    endpoint, _, _ = endpoint_state(aws, "sieve-test")
    assert (endpoint["EndpointStatus"], endpoint["EndpointConfigName"]) == ("InService", second)
    assert {m["ModelName"] for m in aws["sm"].list_models()["Models"]} == models_before
    configs = aws["sm"].list_endpoint_configs()["EndpointConfigs"]
    assert {c["EndpointConfigName"] for c in configs} == {first, second}

    # rollback: back to the first configuration, which then is the one to go back from.
    code, out, err = cli(capsys, "rollback", "--endpoint", "sieve-test")
    assert code == 0, err
    endpoint, _, _ = endpoint_state(aws, "sieve-test")
    assert endpoint["EndpointConfigName"] == first
    assert tags(aws, endpoint["EndpointArn"])["sieve:previous-config"] == second

    # delete: the endpoint, both configurations and both models.
    code, out, err = cli(capsys, "delete", "--endpoint", "sieve-test")
    assert code == 0, err
    assert aws["sm"].list_endpoints()["Endpoints"] == []
    assert aws["sm"].list_endpoint_configs()["EndpointConfigs"] == []
    assert aws["sm"].list_models()["Models"] == []
    code, _, err = cli(capsys, "wait", "--endpoint", "sieve-test")
    assert code == 2 and "does not exist" in err


def queue_results(aws, path: str, results: list[dict]) -> None:
    """Tell moto what the next invocations answer (moto runs no container)."""
    request = urllib.request.Request(
        f"{aws['url']}/moto-api/static/sagemaker/{path}", method="POST",
        data=json.dumps({"results": results}).encode(),
        headers={"Content-Type": "application/json"})
    urllib.request.urlopen(request, timeout=10).close()


def test_invoke_real_time_and_async(aws, models, capsys, tmp_path, known_images):
    """`invoke` sends the image file and prints the endpoint's JSON; `--async` uploads the
    image, queues the request and reads the result from S3."""
    image = tmp_path / "shirt.png"
    image.write_bytes(known_images[0][0])
    answer = {"predictions": [{"status": "done", "class": known_images[0][1]}]}
    code, _, err = cli(capsys, "deploy", "--endpoint", "sieve-rt", "--ref", "v1")
    assert code == 0, err
    queue_results(aws, "endpoint-results", [{"Body": json.dumps(answer),
                                             "ContentType": "application/json"}])
    # moto's server reads every request body as UTF-8 text, so a raw PNG body gets a 500
    # there: the image goes base64 in JSON, which the handler takes as well.
    code, out, err = cli(capsys, "invoke", str(image), "--endpoint", "sieve-rt", "--which",
                         "classifier")
    assert code == 0, err
    assert json.loads(out) == answer

    output = f"s3://{aws['bucket']}/sagemaker/async"
    code, _, err = cli(capsys, "deploy", "--endpoint", "sieve-async", "--async-output", output)
    assert code == 0, err
    _, config, _ = endpoint_state(aws, "sieve-async")
    assert config["AsyncInferenceConfig"]["OutputConfig"]["S3OutputPath"] == output + "/output/"
    queue_results(aws, "async-endpoint-results", [{"data": json.dumps(answer)}])
    code, out, err = cli(capsys, "invoke", str(image), "--endpoint", "sieve-async", "--async")
    assert code == 0, err
    assert json.loads(out) == answer
    inputs = aws["s3"].list_objects_v2(Bucket=aws["bucket"], Prefix="sagemaker/async-inputs/")
    (uploaded,) = inputs["Contents"]
    stored = aws["s3"].get_object(Bucket=aws["bucket"], Key=uploaded["Key"])
    assert stored["Body"].read() == image.read_bytes() and stored["ContentType"] == "image/png"
    for name in ("sieve-rt", "sieve-async"):
        assert cli(capsys, "delete", "--endpoint", name)[0] == 0


def test_missing_role_is_a_clear_error(aws, capsys, monkeypatch):
    """Without SAGEMAKER_ROLE_ARN nothing is created and the message says what to set."""
    monkeypatch.delenv("SAGEMAKER_ROLE_ARN")
    code, _, err = cli(capsys, "deploy", "--endpoint", "sieve-norole",
                       "--model-data", "s3://b/model.tar.gz")
    assert code == 2 and "SAGEMAKER_ROLE_ARN" in err
    assert aws["sm"].list_models()["Models"] == []
