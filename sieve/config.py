"""Service settings read from the environment (and `.env`), each with an embedded default."""

import os
from dataclasses import dataclass
from pathlib import Path

from dotenv import load_dotenv

ROOT = Path(__file__).resolve().parent.parent

FASHION_MNIST_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"

# What can be trained, and with which optimizers (shared by the CLI and training runs).
MODELS = ("classifier", "filter")
OPTIMIZERS = ("sgd", "adam", "adamw")



DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


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


def _float(name: str, default: float) -> float:
    """A number from the environment, with a clear error when it is not one."""
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a number") from None


def _flag(name: str, default: bool) -> bool:
    """A yes/no setting from the environment (1/0, true/false, yes/no, on/off)."""
    raw = os.environ.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{name}={raw!r} is not a yes/no value: use 1 or 0")


@dataclass(frozen=True)
class ServiceSettings:
    """Where Redis and the database are, and how the serving workers behave."""

    redis_url: str
    broker_url: str
    result_backend: str
    database_url: str
    batch_max_size: int
    batch_max_wait: float
    task_time_limit: float
    visibility_timeout: float
    recovery_interval: float
    top_k: int
    torch_threads: int = 1
    worker_metrics_port: int = 9808
    worker_metrics_host: str = "127.0.0.1"
    model_reload_interval: float = 30.0
    training_heartbeat: float = 2.0
    training_stale_after: float = 60.0
    chain_locally: bool = True
    sagemaker_autodeploy: bool = False
    # Webhooks (see sieve/webhooks.py): hosts or networks that may be private or plain
    # http, the limit of one attempt, the first retry's delay and how long to keep trying,
    # and how often the webhooks worker looks for deliveries that are due.
    webhook_allow_hosts: tuple[str, ...] = ()
    webhook_timeout: float = 10.0
    webhook_retry_base: float = 5.0
    webhook_retry_for: float = 86400.0
    webhook_poll_interval: float = 0.5


def load_service_settings() -> ServiceSettings:
    """Settings from the environment, after loading `.env` (see `.env.example`)."""
    load_settings()  # loads .env without overriding the environment
    redis_url = os.environ.get("REDIS_URL") or DEFAULT_REDIS_URL
    database_url = os.environ.get("DATABASE_URL") or f"sqlite:///{ROOT / 'var' / 'sieve.db'}"
    return ServiceSettings(
        redis_url=redis_url,
        broker_url=os.environ.get("CELERY_BROKER_URL") or redis_url,
        result_backend=os.environ.get("CELERY_RESULT_BACKEND") or redis_url,
        database_url=database_url,
        batch_max_size=int(_float("SIEVE_BATCH_MAX_SIZE", 32)),
        batch_max_wait=_float("SIEVE_BATCH_MAX_WAIT_MS", 2) / 1000,
        task_time_limit=_float("SIEVE_TASK_TIME_LIMIT", 60),
        visibility_timeout=_float("SIEVE_VISIBILITY_TIMEOUT", 120),
        recovery_interval=_float("SIEVE_RECOVERY_INTERVAL", 15),
        top_k=int(_float("SIEVE_TOP_K", 3)),
        torch_threads=int(_float("SIEVE_TORCH_THREADS", 1)),
        worker_metrics_port=int(_float("SIEVE_WORKER_METRICS_PORT", 9808)),
        worker_metrics_host=os.environ.get("SIEVE_WORKER_METRICS_HOST") or "127.0.0.1",
        model_reload_interval=_float("SIEVE_MODEL_RELOAD_INTERVAL", 30),
        training_heartbeat=_float("SIEVE_TRAINING_HEARTBEAT", 2),
        training_stale_after=_float("SIEVE_TRAINING_STALE_AFTER", 60),
        chain_locally=_flag("SIEVE_CHAIN_LOCALLY", True),
        sagemaker_autodeploy=_flag("SIEVE_SAGEMAKER_AUTODEPLOY", False),
        webhook_allow_hosts=tuple(
            part.strip() for part in os.environ.get("SIEVE_WEBHOOK_ALLOW_HOSTS", "").split(",")
            if part.strip()),
        webhook_timeout=_float("SIEVE_WEBHOOK_TIMEOUT", 10),
        webhook_retry_base=_float("SIEVE_WEBHOOK_RETRY_BASE", 5),
        webhook_retry_for=_float("SIEVE_WEBHOOK_RETRY_FOR", 86400),
        webhook_poll_interval=_float("SIEVE_WEBHOOK_POLL_INTERVAL", 0.5),
    )
