"""Sieve's settings: one typed object, read from the environment and `.env` once per process.

Every setting has an embedded default; `.env.example` lists them all with what each does.
A value set in the environment wins over the same name in `.env` (which is ignored by git),
and an empty value counts as unset. Processes call `get_settings()`, which reads them once
(again only if the process changes its own environment); `read_settings()` always reads
them anew. The web tier derives its Flask configuration from this object
(`web/settings.py`), the workers their Celery configuration (`workers/celery_app.py`).
"""

import functools
import os
from pathlib import Path
from typing import Annotated

from dotenv import load_dotenv
from pydantic import AliasChoices, Field, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

ROOT = Path(__file__).resolve().parent.parent
ENV_FILE = ROOT / ".env"

FASHION_MNIST_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"

# What can be trained, and with which optimizers (the training CLI, training runs, the API).
MODELS = ("classifier", "filter")
OPTIMIZERS = ("sgd", "adam", "adamw")
# Networks `--arch` names: the small CNN and the torchvision backbones (training.models).
ARCHS = ("cnn", "resnet18", "mobilenet_v3_small")

YES, NO = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def variable(name: str, default=None, **field):
    """A field read from the environment variable `name` (not SIEVE_<field name>)."""
    return Field(default, validation_alias=name, **field)


class SageMakerSettings(BaseSettings):
    """SAGEMAKER_*: role, region, instances, container images, where artifacts go."""

    model_config = SettingsConfigDict(env_prefix="SAGEMAKER_", env_file=ENV_FILE,
                                      env_ignore_empty=True, extra="ignore", frozen=True,
                                      validate_by_name=True)

    role_arn: str | None = None
    region: str = Field("us-east-1", validation_alias=AliasChoices(
        "SAGEMAKER_REGION", "AWS_REGION", "AWS_DEFAULT_REGION"))
    instance_type: str = "ml.m5.large"
    training_instance_type: str = Field("", validate_default=True)  # default: instance_type
    image_uri: str | None = None
    training_image_uri: str | None = None
    s3_url: str | None = None  # default: s3://<bucket>/sagemaker of an S3 model store
    endpoint_name: str = "sieve"

    @field_validator("training_instance_type")
    @classmethod
    def _like_endpoints(cls, value: str, info: ValidationInfo) -> str:
        return value or info.data.get("instance_type", "")


class Settings(BaseSettings):
    """Everything a Sieve process reads from its environment; see `.env.example`."""

    model_config = SettingsConfigDict(env_prefix="SIEVE_", env_file=ENV_FILE,
                                      env_ignore_empty=True, extra="ignore", frozen=True,
                                      validate_by_name=True)

    # Data and the model store (training, workers, and the web tier's model pages).
    data_url: str = variable("DATA_URL", default=FASHION_MNIST_URL)
    data_dir: Path = ROOT / "var" / "data"
    fashion_mnist_dir: Path = variable("FASHION_MNIST_DIR",
                                  default=Path("/usr/share/datasets/fashion-mnist"))
    model_store_url: str = variable("MODEL_STORE_URL", default=str(ROOT / "var" / "models"))
    model_cache_dir: Path = ROOT / "var" / "cache" / "models"
    aws_endpoint_url: str | None = variable("AWS_ENDPOINT_URL", default=None)
    code_version: str | None = None  # default: `git describe` of the checkout

    # Redis, the database, and the serving workers.
    redis_url: str = variable("REDIS_URL", default=DEFAULT_REDIS_URL)
    broker_url: str = variable("CELERY_BROKER_URL", default="", validate_default=True)
    result_backend: str = variable("CELERY_RESULT_BACKEND", default="", validate_default=True)
    database_url: str = variable("DATABASE_URL", default=f"sqlite:///{ROOT / 'var' / 'sieve.db'}")
    batch_max_size: int = 32
    task_time_limit: float = 60.0
    visibility_timeout: float = 120.0
    recovery_interval: float = 15.0
    top_k: int = 3
    torch_threads: int = 1
    worker_metrics_port: int = 9808
    worker_metrics_host: str = "127.0.0.1"
    model_reload_interval: float = 30.0
    chain_locally: bool = True

    # Training workers.
    training_heartbeat: float = 2.0
    training_stale_after: float = 60.0

    # Webhooks (sieve/webhooks.py): hosts or networks that may be private or plain http,
    # the limit of one attempt, the first retry's delay and how long to keep trying, and
    # how often the webhooks worker looks for deliveries that are due.
    webhook_allow_hosts: Annotated[tuple[str, ...], NoDecode] = ()
    webhook_timeout: float = 10.0
    webhook_retry_base: float = 5.0
    webhook_retry_for: float = 86400.0
    webhook_poll_interval: float = 0.5

    # The web tier (web/settings.py turns these into the Flask configuration).
    env: str = "development"
    secret_key: str | None = variable("SECRET_KEY", default=None)
    secret_key_file: Path = ROOT / "var" / "secret-key"
    max_upload_mb: float = variable("MAX_UPLOAD_MB", default=10.0)
    max_files_per_upload: int = 10
    max_pixels_per_request: int = 200_000_000
    history_page_size: int = 20
    login_max_failures: int = 5
    login_max_failures_per_address: int = 50
    login_lockout_max_seconds: int = 900
    trusted_proxies: int = 0
    metrics_token: str | None = None
    sse_keepalive_seconds: float = 15.0
    sse_max_seconds: float = 300.0
    session_cookie_secure: bool | None = variable("SESSION_COOKIE_SECURE", default=None)
    flask_run_host: str = variable("FLASK_RUN_HOST", default="127.0.0.1")
    flask_run_port: int = variable("FLASK_RUN_PORT", default=5000)

    # The JSON API.
    rate_limit: str = "120/minute"
    max_queue_depth: int = 1000
    backpressure_retry_after: int = 10
    max_images: int = 16
    max_image_bytes: int = 10 * 1024 * 1024
    poll_after: int = 1
    max_wait_seconds: float = 30.0

    # AWS SageMaker (training/sagemaker/), and deploying there on each promotion.
    sagemaker_autodeploy: bool = False
    sagemaker: SageMakerSettings = Field(default_factory=SageMakerSettings)

    @field_validator("broker_url", "result_backend")
    @classmethod
    def _celery_on_redis(cls, value: str, info: ValidationInfo) -> str:
        """Celery's broker and result backend are REDIS_URL unless named on their own."""
        return value or info.data.get("redis_url", DEFAULT_REDIS_URL)

    @field_validator("chain_locally", "sagemaker_autodeploy", "session_cookie_secure",
                     mode="before")
    @classmethod
    def _yes_or_no(cls, value, info: ValidationInfo):
        """1/0, true/false, yes/no, on/off, in any case."""
        if not isinstance(value, str):
            return value
        if value.strip().lower() in YES + NO:
            return value.strip().lower() in YES
        name = variable_of(cls, info.field_name)
        raise ValueError(f"{name}={value!r} is not a yes/no value: use 1 or 0")

    @field_validator("webhook_allow_hosts", mode="before")
    @classmethod
    def _comma_separated(cls, value):
        """`a, b,c` -> ("a", "b", "c")."""
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @property
    def production(self) -> bool:
        """SIEVE_ENV=production."""
        return self.env == "production"

    def replace(self, **changes) -> "Settings":
        """A copy with some fields changed (by field name), validated like the original."""
        return type(self).model_validate({**self.model_dump(), **changes})


def variable_of(model: type[BaseSettings], field: str) -> str:
    """The environment variable a field is read from (the first, where it has several)."""
    alias = model.model_fields[field].validation_alias
    if isinstance(alias, AliasChoices):
        return str(alias.choices[0])
    return alias or f"{model.model_config.get('env_prefix', '')}{field}".upper()


def read_settings() -> Settings:
    """The settings as the environment and `.env` give them now; errors name the variable."""
    try:
        return Settings()
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            field = str(error["loc"][0]) if error["loc"] else ""
            name = variable_of(Settings, field) if field in Settings.model_fields else field
            problems.append(f"{name}={error.get('input')!r}: {error['msg']}")
        raise ValueError("invalid settings: " + "; ".join(problems)) from None


@functools.cache
def load_env_file() -> None:
    """Load `.env` into the environment once, without overriding it, for the libraries
    that read the environment themselves (boto3's credentials, Flask's FLASK_RUN_*,
    prometheus_client)."""
    load_dotenv(ENV_FILE, override=False)


_read: dict[str, object] = {}


def get_settings() -> Settings:
    """The process's settings: read on the first call, and again only if the process has
    changed its own environment since (a service never does; tests do)."""
    load_env_file()
    environment = tuple(sorted(os.environ.items()))
    if _read.get("environment") != environment:
        _read.update(settings=read_settings(), environment=environment)
    return _read["settings"]
