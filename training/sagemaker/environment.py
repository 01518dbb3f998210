"""`python -m training.train` inside a SageMaker training job.

SageMaker's training toolkit runs the entry script (`sieve_train.py`, which calls
`training.train.cli`) with the job's hyperparameters as options, one `--key value` pair
each, names as given and JSON values decoded (`--batch_size 64 --download_data True`),
and describes the job in environment variables:

    SM_MODEL_DIR          where the model must be written (uploaded as model.tar.gz)
    SM_CHANNEL_TRAINING   the `training` channel: an image folder or the Fashion-MNIST files
    SM_CHANNEL_WEIGHTS    optional `weights` channel with a model.pt to start from
    SM_CHANNEL_BACKBONE   optional `backbone` channel: one state dict (*.pt) for --weights
    SM_CHANNEL_OUTLIERS   optional `outliers` channel: pictures for the filter's --outliers-dir
    SM_OUTPUT_DATA_DIR    extra output (uploaded as output.tar.gz): the model card
    SM_HPS                the hyperparameters as JSON (used when no options were given)
    SM_NUM_GPUS           GPUs on the instance

Those options become training options (`job_argv`: dashes in names, true values as flags,
false ones left out); the run trains as usual into a scratch model store, then copies the
version's files (model.pt, card.json, plots) to SM_MODEL_DIR.
"""

import json
import os
import shutil
import tempfile
from argparse import Namespace
from pathlib import Path

from sieve.store import ModelStore


def in_training_job(environ=os.environ) -> bool:
    """True inside a SageMaker training job."""
    return bool(environ.get("SM_MODEL_DIR"))


def hyperparameter_argv(environ=os.environ) -> list[str]:
    """SM_HPS as command-line options (`{"epochs": 3}` -> `--epochs 3`)."""
    options = []
    for key, value in json.loads(environ.get("SM_HPS") or "{}").items():
        options += _option(f"--{key}", value)
    return options


def job_argv(argv: list[str], environ=os.environ) -> list[str]:
    """The training options of a job: its command line as the container passes the
    hyperparameters, or SM_HPS when the command line is empty."""
    if not argv:
        return hyperparameter_argv(environ)
    options, index = [], 0
    while index < len(argv):
        token, index = argv[index], index + 1
        if not token.startswith("--") or "=" in token:
            options.append(_dashes(token))
            continue
        value = None
        if index < len(argv) and not argv[index].startswith("--"):
            value, index = argv[index], index + 1
        options += _option(token, value)
    return options


def _dashes(token: str) -> str:
    """`--batch_size` (or `--batch_size=8`) as the option `--batch-size`; values as they are."""
    if not token.startswith("--"):
        return token
    name, sep, value = token.partition("=")
    return name.replace("_", "-") + sep + value


def _option(flag: str, value) -> list[str]:
    """One option: `[flag, value]`, `[flag]` for a true (or no) value, nothing for false."""
    flag = _dashes(flag)
    if value is None or value is True or str(value).lower() == "true":
        return [flag]
    if value is False or str(value).lower() in ("false", ""):
        return []
    return [flag, str(value)]


def apply(args: Namespace, environ=os.environ) -> Path:
    """Point the run at the job's channels and a scratch store; returns the store folder."""
    args.train = True
    channel = environ.get("SM_CHANNEL_TRAINING")
    if channel and args.data_dir is None:
        args.data_dir = Path(channel)
    weights = Path(environ.get("SM_CHANNEL_WEIGHTS") or "/nonexistent") / "model.pt"
    if args.load_weights is None and weights.is_file():
        args.load_weights = weights
    backbone = sorted(Path(environ.get("SM_CHANNEL_BACKBONE") or "/nonexistent").glob("*.pt"))
    if args.weights is None and len(backbone) == 1:
        args.weights = str(backbone[0])
    outliers = environ.get("SM_CHANNEL_OUTLIERS")
    if outliers and args.outliers_dir is None and args.model == "filter":
        args.outliers_dir = Path(outliers)
    if args.device == "cpu" and int(environ.get("SM_NUM_GPUS") or 0) > 0:
        args.device = "cuda"
    scratch = Path(tempfile.mkdtemp(prefix="sieve-sagemaker-store-"))
    args.model_store = str(scratch)
    return scratch


def export(args: Namespace, scratch: Path, environ=os.environ) -> Path:
    """Copy the trained version's files to SM_MODEL_DIR (and its card to
    SM_OUTPUT_DATA_DIR); returns the model folder."""
    store = ModelStore(scratch)
    folder = store.open(args.model)
    target = Path(environ["SM_MODEL_DIR"])
    target.mkdir(parents=True, exist_ok=True)
    for path in folder.iterdir():
        shutil.copyfile(path, target / path.name)
    if environ.get("SM_OUTPUT_DATA_DIR"):
        output = Path(environ["SM_OUTPUT_DATA_DIR"])
        output.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(folder / "card.json", output / "card.json")
    shutil.rmtree(scratch, ignore_errors=True)
    return target
