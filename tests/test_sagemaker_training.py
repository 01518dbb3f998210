"""The training CLI as a SageMaker training-job entry point, and a job's model registered
in the model store (the job itself created on moto's server, which runs no container)."""

import json
import tarfile

import boto3
import numpy as np
import pytest
from PIL import Image

from tests.fixtures_sagemaker import cli
from training import train
from training.sagemaker import environment
from training.store import ModelStore


def tiny_image_folder(root) -> None:
    """train/ and val/ with two classes of 16x16 images: dark squares and light ones."""
    rng = np.random.default_rng(0)
    for split, count in (("train", 12), ("val", 4)):
        for label, level in (("dark", 40), ("light", 210)):
            folder = root / split / label
            folder.mkdir(parents=True)
            for i in range(count):
                pixels = np.clip(rng.normal(level, 20, (16, 16, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.png")


@pytest.fixture
def job_env(tmp_path, monkeypatch) -> dict:
    """The environment SageMaker's toolkit gives the entry script, on a tiny data set."""
    tiny_image_folder(tmp_path / "channel")
    env = {"SM_MODEL_DIR": str(tmp_path / "model"), "SM_OUTPUT_DATA_DIR": str(tmp_path / "out"),
           "SM_CHANNEL_TRAINING": str(tmp_path / "channel"), "SM_NUM_GPUS": "0",
           "SM_HPS": json.dumps({"epochs": 1, "image-size": 16, "batch-size": 8,
                                 "optimizer": "adam", "width": 4})}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


def test_hyperparameters_become_options(monkeypatch):
    """SM_HPS as options, flags for true values."""
    monkeypatch.setenv("SM_HPS", json.dumps({"epochs": 2, "download_data": True,
                                             "seed": "7", "x": False}))
    assert environment.hyperparameter_argv() == ["--epochs", "2", "--download-data",
                                                 "--seed", "7"]


def test_entry_point_trains_from_channel(job_env, tmp_path):
    """`python -m training.train` with no options in a job: trains on the channel, writes
    the model and its card to SM_MODEL_DIR and the card to SM_OUTPUT_DATA_DIR."""
    assert train.cli([]) == 0
    model = tmp_path / "model"
    assert {"model.pt", "card.json", "MANIFEST.json"} <= {p.name for p in model.iterdir()}
    card = json.loads((model / "card.json").read_text())
    assert card["classes"] == ["dark", "light"] and card["training"]["epochs"] == 1
    assert card["data"]["source"] == job_env["SM_CHANNEL_TRAINING"]
    assert json.loads((tmp_path / "out" / "card.json").read_text()) == card


def test_submit_and_register(job_env, aws, capsys, tmp_path):
    """`train` uploads the source and creates the job; `register` publishes the job's
    model.tar.gz (here the entry point's output, put where the job writes it)."""
    assert train.cli([]) == 0
    code, out, err = cli(capsys, "train", "--data", f"s3://{aws['bucket']}/data/tiny/",
                         "--hp", "epochs=1", "--hp", "image-size=16", "--no-wait")
    assert code == 0, err
    name = json.loads(out[out.index("{"):])["training_job"]
    job = aws["sm"].describe_training_job(TrainingJobName=name)
    hps = job["HyperParameters"]
    assert hps["sagemaker_program"] == "sieve_train.py" and hps["epochs"] == "1"
    assert hps["model"] == "classifier"
    assert job["AlgorithmSpecification"]["TrainingImage"].endswith("pytorch-training:2.6-cpu-py312")
    assert job["InputDataConfig"][0]["ChannelName"] == "training"
    bucket, key = hps["sagemaker_submit_directory"][5:].split("/", 1)
    source = tmp_path / "sourcedir.tar.gz"
    aws["s3"].download_file(bucket, key, str(source))
    with tarfile.open(source) as tar:
        assert {"sieve_train.py", "training/train.py", "training/preprocess.py",
                "requirements.txt"} <= set(tar.getnames())

    artifact = job["ModelArtifacts"]["S3ModelArtifacts"]
    packed = tmp_path / "job-model.tar.gz"
    with tarfile.open(packed, "w:gz") as tar:
        for path in (tmp_path / "model").iterdir():
            tar.add(path, path.name)
    bucket, key = artifact[5:].split("/", 1)
    boto3.client("s3", endpoint_url=aws["url"]).upload_file(str(packed), bucket, key)
    store = ModelStore(tmp_path / "store")
    code, out, err = cli(capsys, "register", name, "--model-store", str(store.root))
    assert code == 0, err
    assert out.strip() == "v1" and store.versions("classifier") == ["v1"]
    card = store.card("classifier", "v1")
    assert card["sagemaker"] == {"artifact": artifact, "training_job": name,
                                 "training_job_arn": job["TrainingJobArn"]}
    assert (store.open("classifier", "v1") / "model.pt").is_file()
