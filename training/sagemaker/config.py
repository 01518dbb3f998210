"""SageMaker settings: the SAGEMAKER_* section of Sieve's settings, with what follows from them."""

import re
from dataclasses import dataclass

from sieve.config import get_settings

# The AWS Deep Learning Container the default image URIs name (PyTorch, CPU, Python 3.12).
PYTORCH_VERSION = "2.6"
PYTHON_VERSION = "py312"


class SageMakerError(RuntimeError):
    """A SageMaker operation that cannot go on, with what to do about it."""


@dataclass(frozen=True)
class SageMakerSettings:
    """Role, region, instances, container images and where artifacts go in S3."""

    role_arn: str | None
    region: str
    instance_type: str
    training_instance_type: str
    image_uri: str | None
    training_image_uri: str | None
    s3_url: str | None
    endpoint_name: str
    aws_endpoint_url: str | None

    def require_role(self) -> str:
        """The execution role ARN, or an error saying how to set it."""
        if not self.role_arn:
            raise SageMakerError("no IAM role: set SAGEMAKER_ROLE_ARN or pass --role "
                                 "(the role SageMaker assumes; docs/deployment.md has its policy)")
        return self.role_arn

    def require_s3_url(self) -> str:
        """Where packages, job outputs and async results go, as s3://bucket/prefix."""
        if not self.s3_url:
            raise SageMakerError("no S3 location for SageMaker artifacts: set SAGEMAKER_S3_URL "
                                 "(or use an s3:// MODEL_STORE_URL) or pass --s3-url")
        return self.s3_url.rstrip("/")

    def inference_image(self, instance_type: str | None = None) -> str:
        """The serving container: SAGEMAKER_IMAGE_URI or the region's PyTorch inference DLC."""
        return self.image_uri or default_image(self.region, "inference",
                                               instance_type or self.instance_type)

    def training_image(self, instance_type: str | None = None) -> str:
        """The training container: SAGEMAKER_TRAINING_IMAGE_URI or the PyTorch training DLC."""
        return self.training_image_uri or default_image(
            self.region, "training", instance_type or self.training_instance_type)


def default_image(region: str, scope: str, instance_type: str) -> str:
    """The AWS PyTorch Deep Learning Container for a region (sagemaker-core's URI tables)."""
    from sagemaker.core import image_uris  # imported here: it takes a second or two

    try:
        return image_uris.retrieve("pytorch", region, version=PYTORCH_VERSION,
                                   py_version=PYTHON_VERSION, instance_type=instance_type,
                                   image_scope=scope)
    except ValueError as exc:
        raise SageMakerError(f"no PyTorch {scope} image known for region {region} and "
                             f"{instance_type}: set SAGEMAKER_IMAGE_URI ({exc})") from exc


def _default_s3_url(model_store_url: str) -> str | None:
    """s3://bucket/sagemaker when the model store is on S3, else None."""
    match = re.match(r"s3://([^/]+)", model_store_url)
    return f"s3://{match[1]}/sagemaker" if match else None


def load_sagemaker_settings() -> SageMakerSettings:
    """The process's SageMaker settings (`sieve.config`); every field but the role has a
    default."""
    settings = get_settings()
    section = settings.sagemaker
    return SageMakerSettings(
        role_arn=section.role_arn,
        region=section.region,
        instance_type=section.instance_type,
        training_instance_type=section.training_instance_type,
        image_uri=section.image_uri,
        training_image_uri=section.training_image_uri,
        s3_url=section.s3_url or _default_s3_url(settings.model_store_url),
        endpoint_name=section.endpoint_name,
        aws_endpoint_url=settings.aws_endpoint_url,
    )
