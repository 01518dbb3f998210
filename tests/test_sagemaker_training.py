"""The training CLI as a SageMaker training-job entry point, and a job's model registered
in the model store (the job itself created on moto's server, which runs no container).

`test_source_archive_runs_as_the_container_runs_it` plays the container's part: it takes
the job that `train` created, unpacks its sourcedir.tar.gz into an empty folder and runs
the entry script there in a new process, as the SageMaker training toolkit does."""

import json
import subprocess
import sys
import tarfile
from pathlib import Path

import boto3
import numpy as np
import pytest
from PIL import Image

from sieve.store import ModelStore
from tests.fixtures_sagemaker import cli
from tests.photos import write_state_dict
from training import train
from training.sagemaker import environment
from training.sagemaker.package import safe_extract

# Runs in the container's code folder: which project modules the entry script brings in,
# and from where.
PROBE = r"""
import json, sys
from pathlib import Path
import sieve_train
print(json.dumps({n: m.__file__ for n, m in sys.modules.items()
                  if n.split(".")[0] == "training"}))
"""


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


def test_toolkit_options_become_training_options():
    """The container's `--key value` pairs: dashes in names, flags for true values,
    nothing for false ones; options already in our form pass as they are."""
    argv = ["--batch_size", "64", "--download_data", "True", "--epochs", "1", "--seed", "7",
            "--model", "filter", "--subset", "False", "--lr", "-1"]
    assert environment.job_argv(argv, {}) == ["--batch-size", "64", "--download-data",
                                              "--epochs", "1", "--seed", "7", "--model",
                                              "filter", "--lr", "-1"]
    assert environment.job_argv(["--train", "--epochs", "2", "--image-size=16"], {}) == [
        "--train", "--epochs", "2", "--image-size=16"]
    assert environment.job_argv([], {"SM_HPS": '{"epochs": 2}'}) == ["--epochs", "2"]


def container_run(job: dict, code: Path, base: Path) -> tuple[list[str], dict]:
    """The command and environment the PyTorch training container gives a job's entry
    script (sagemaker-training's `entry_point.run`): `python <sagemaker_program>` in the
    code folder, with the hyperparameters other than `sagemaker_*` JSON-decoded, sorted by
    name and passed as `--name value` (`True` for true), and the SM_* variables."""
    hps = {}
    for key, value in job["HyperParameters"].items():
        if not key.startswith("sagemaker_"):
            try:
                hps[key] = json.loads(value)
            except ValueError:
                hps[key] = value
    args = [part for key in sorted(hps) for part in (f"--{key}", str(hps[key]))]
    channels = [channel["ChannelName"] for channel in job["InputDataConfig"]]
    program = job["HyperParameters"]["sagemaker_program"]
    env = {"PATH": "/usr/bin:/bin", "HOME": str(base), "SM_MODEL_DIR": str(base / "model"),
           "SM_OUTPUT_DATA_DIR": str(base / "output" / "data"),
           "SM_CHANNELS": json.dumps(channels), "SM_HPS": json.dumps(hps),
           "SM_NUM_GPUS": "0", "SM_NUM_CPUS": "1", "SM_CURRENT_HOST": "algo-1",
           "SM_HOSTS": '["algo-1"]', "SM_USER_ENTRY_POINT": program,
           "SM_MODULE_DIR": job["HyperParameters"]["sagemaker_submit_directory"],
           **{f"SM_CHANNEL_{c.upper()}": str(base / "input" / "data" / c) for c in channels},
           **{f"SM_HP_{k.upper()}": v if isinstance(v, str) else json.dumps(v)
              for k, v in hps.items()}}
    return [sys.executable, program, *args], env


def test_source_archive_runs_as_the_container_runs_it(aws, fashion, capsys, tmp_path):
    """The job `train` creates, run as the container runs it on a Fashion-MNIST channel:
    the source archive unpacked into an empty folder, its requirements already met, the
    entry script run there in a new process that sees no other copy of the project,
    hyperparameters as the toolkit passes them. It writes the model and its card to
    SM_MODEL_DIR, trained with those hyperparameters."""
    code, out, err = cli(capsys, "train", "--data", f"s3://{aws['bucket']}/data/fashion/",
                         "--hp", "epochs=1", "--hp", "subset=500", "--hp", "val_size=500",
                         "--hp", "batch_size=64", "--hp", "width=4", "--hp", "optimizer=adam",
                         "--hp", "threads=1", "--no-wait")
    assert code == 0, err
    name = json.loads(out[out.index("{"):])["training_job"]
    job = aws["sm"].describe_training_job(TrainingJobName=name)
    bucket, key = job["HyperParameters"]["sagemaker_submit_directory"][5:].split("/", 1)
    source = tmp_path / "sourcedir.tar.gz"
    aws["s3"].download_file(bucket, key, str(source))
    base = tmp_path / "opt" / "ml"
    folder = safe_extract(source, base / "code")
    channel = base / "input" / "data" / "training"
    channel.mkdir(parents=True)
    for path in Path(fashion.source).glob("*-ubyte.gz"):  # SageMaker copies the S3 prefix
        (channel / path.name).symlink_to(path)
    command, env = container_run(job, folder, base)
    assert command[1:3] == ["sieve_train.py", "--batch_size"], command

    # The toolkit installs requirements.txt first: here everything must already be met.
    pip = subprocess.run([sys.executable, "-m", "pip", "install", "--no-index", "--dry-run",
                          "-r", "requirements.txt"], cwd=folder, env=env, capture_output=True,
                         text=True, timeout=120)
    assert pip.returncode == 0 and "Would install" not in pip.stdout, pip.stdout + pip.stderr

    done = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    model = base / "model"
    assert {"model.pt", "card.json", "curves.png", "confusion.png"} <= {
        p.name for p in model.iterdir()}
    card = json.loads((model / "card.json").read_text())
    assert card["name"] == "classifier" and card["data"]["name"] == "fashion-mnist"
    assert card["data"]["source"] == str(channel)
    assert (card["data"]["subset"], card["data"]["val"]) == (500, 500)
    assert (card["training"]["epochs"], card["training"]["batch_size"]) == (1, 64)
    assert card["training"]["optimizer"] == "adam" and card["architecture"]["width"] == 4
    assert json.loads((base / "output" / "data" / "card.json").read_text()) == card

    probe = subprocess.run([sys.executable, "-c", PROBE], cwd=folder, env=env,
                           capture_output=True, text=True, timeout=120)
    assert probe.returncode == 0, probe.stderr
    loaded = json.loads(probe.stdout)
    assert {"training.train", "training.data", "training.preprocess"} <= set(loaded)
    assert all(Path(f).is_relative_to(folder) for f in loaded.values()), loaded


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


def test_backbone_and_outliers_channels_become_options(job_env, tmp_path, monkeypatch):
    """A job's `backbone` channel (one state dict) is --weights, its `outliers` channel the
    filter's --outliers-dir: a torchvision backbone trains on an image-folder channel."""
    write_state_dict(tmp_path / "backbone" / "mobilenet.pt", "mobilenet_v3_small")
    (tmp_path / "outliers").mkdir()
    monkeypatch.setenv("SM_CHANNEL_BACKBONE", str(tmp_path / "backbone"))
    monkeypatch.setenv("SM_CHANNEL_OUTLIERS", str(tmp_path / "outliers"))
    monkeypatch.setenv("SM_HPS", json.dumps({"epochs": 1, "image-size": 32, "batch-size": 8,
                                             "arch": "mobilenet_v3_small",
                                             "freeze-backbone": True}))
    assert train.cli([]) == 0
    card = json.loads((tmp_path / "model" / "card.json").read_text())
    assert card["architecture"]["name"] == "mobilenet_v3_small"
    assert card["training"]["weights"] == str(tmp_path / "backbone" / "mobilenet.pt")
    assert card["training"]["freeze_backbone"] is True
    assert card["training"]["outliers_dir"] is None  # a classifier has no use for them
    args = train.get_args_parser().parse_args(["--model", "filter"])
    environment.apply(args)
    assert args.outliers_dir == tmp_path / "outliers"


def test_submit_and_register(job_env, aws, capsys, tmp_path):
    """`train` uploads the source and creates the job; `register` publishes the job's
    model.tar.gz (here the entry point's output, put where the job writes it)."""
    assert train.cli([]) == 0
    code, out, err = cli(capsys, "train", "--data", f"s3://{aws['bucket']}/data/tiny/",
                         "--hp", "epochs=1", "--hp", "image-size=16", "--no-wait",
                         "--outliers", f"s3://{aws['bucket']}/data/not-tiny/")
    assert code == 0, err
    name = json.loads(out[out.index("{"):])["training_job"]
    job = aws["sm"].describe_training_job(TrainingJobName=name)
    hps = job["HyperParameters"]
    assert hps["sagemaker_program"] == "sieve_train.py" and hps["epochs"] == "1"
    assert hps["model"] == "classifier"
    assert job["AlgorithmSpecification"]["TrainingImage"].endswith("pytorch-training:2.6-cpu-py312")
    assert [c["ChannelName"] for c in job["InputDataConfig"]] == ["training", "outliers"]
    assert job["InputDataConfig"][1]["DataSource"]["S3DataSource"]["S3Uri"].endswith(
        "/data/not-tiny/")
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
