"""Settings read from the environment (and a `.env` file at the project root)."""

import os
from dataclasses import dataclass
from pathlib import Path

from dotenv import load_dotenv

ROOT = Path(__file__).resolve().parent.parent

FASHION_MNIST_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"

# What can be trained, and with which optimizers (shared by the CLI and training runs).
MODELS = ("classifier", "filter")
OPTIMIZERS = ("sgd", "adam", "adamw")
# Networks `--arch` names: the small CNN and the torchvision backbones (training.models).
ARCHS = ("cnn", "resnet18", "mobilenet_v3_small")


@dataclass(frozen=True)
class Settings:
    """Where data and models live; every field has an embedded default."""

    data_dir: Path
    data_url: str
    fashion_mnist_dir: Path
    model_store_url: str
    model_cache_dir: Path = ROOT / "var" / "cache" / "models"
    aws_endpoint_url: str | None = None


def load_settings(env_file: Path | None = None) -> Settings:
    """Read settings from the environment, after loading `.env` without overriding it."""
    load_dotenv(env_file or ROOT / ".env", override=False)
    return Settings(
        data_dir=Path(os.environ.get("SIEVE_DATA_DIR") or ROOT / "var" / "data"),
        data_url=os.environ.get("DATA_URL") or FASHION_MNIST_URL,
        fashion_mnist_dir=Path(
            os.environ.get("FASHION_MNIST_DIR") or "/usr/share/datasets/fashion-mnist"
        ),
        model_store_url=os.environ.get("MODEL_STORE_URL") or str(ROOT / "var" / "models"),
        model_cache_dir=Path(
            os.environ.get("SIEVE_MODEL_CACHE_DIR") or ROOT / "var" / "cache" / "models"
        ),
        aws_endpoint_url=os.environ.get("AWS_ENDPOINT_URL") or None,
    )
