"""Training jobs on SageMaker: submit `python -m training.train`, register what it made.

Submitting uploads `sourcedir.tar.gz` (the entry script and the project modules it needs,
from this checkout) and creates a job (sagemaker-core's `TrainingJob.create`) on the
PyTorch training container, which runs the entry script with the hyperparameters as
options. When the job completes,
its `model.tar.gz` (model.pt, card.json, plots) is published to the model store as the
next version of the model, with the job recorded in the card.
"""

import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from sieve.store import CARD, MANIFEST, Store
from training.sagemaker.config import SageMakerError, SageMakerSettings
from training.sagemaker.endpoints import Clients, split_s3, stamp, upload
from training.sagemaker.package import (
    TRAINING_ENTRY,
    build_source_archive,
    safe_extract,
)

FINISHED = {"Completed", "Failed", "Stopped"}


def submit(clients: Clients, settings: SageMakerSettings, data_url: str, model: str,
           hyperparameters: dict, instance_type: str | None = None,
           max_seconds: int = 3 * 3600, echo: Callable[[str], None] = print,
           channels: dict[str, str] | None = None):
    """Upload the source and create the training job; returns the sagemaker-core job.

    `channels`: more input channels by name (`backbone`, `outliers`, `weights`), each an
    s3:// prefix; the `training` channel is `data_url`."""
    from sagemaker.core.resources import TrainingJob
    from sagemaker.core.shapes import (
        AlgorithmSpecification,
        Channel,
        DataSource,
        OutputDataConfig,
        ResourceConfig,
        S3DataSource,
        StoppingCondition,
    )

    s3_url = settings.require_s3_url()
    instance_type = instance_type or settings.training_instance_type
    with tempfile.TemporaryDirectory(prefix="sieve-sourcedir-") as folder:
        archive = Path(folder) / "sourcedir.tar.gz"
        build_source_archive(archive)
        source = upload(clients, archive, f"{s3_url}/source", "training")
    name = stamp(f"sieve-{model}")
    hps = {"model": model, **{k: str(v) for k, v in hyperparameters.items()},
           "sagemaker_program": TRAINING_ENTRY, "sagemaker_submit_directory": source,
           "sagemaker_region": settings.region}
    echo(f"submitting training job {name} ({instance_type}, data {data_url})")
    return TrainingJob.create(
        training_job_name=name, role_arn=settings.require_role(), region=settings.region,
        algorithm_specification=AlgorithmSpecification(
            training_image=settings.training_image(instance_type), training_input_mode="File"),
        hyper_parameters=hps,
        input_data_config=[Channel(channel_name=name, data_source=DataSource(
            s3_data_source=S3DataSource(s3_data_type="S3Prefix", s3_uri=url,
                                        s3_data_distribution_type="FullyReplicated")))
            for name, url in {"training": data_url, **(channels or {})}.items()],
        output_data_config=OutputDataConfig(s3_output_path=f"{s3_url}/jobs"),
        resource_config=ResourceConfig(instance_type=instance_type, instance_count=1,
                                       volume_size_in_gb=30),
        stopping_condition=StoppingCondition(max_runtime_in_seconds=max_seconds))


def wait(settings: SageMakerSettings, name: str, timeout: float = 4 * 3600, poll: float = 30,
         echo: Callable[[str], None] = print):
    """Poll the job until it finishes, reporting each status change; the job."""
    from sagemaker.core.resources import TrainingJob

    started, last = time.monotonic(), None
    while True:
        job = TrainingJob.get(training_job_name=name, region=settings.region)
        status = f"{job.training_job_status} / {job.secondary_status}"
        if status != last:
            echo(f"training job {name}: {status} ({time.monotonic() - started:.0f} s)")
            last = status
        if job.training_job_status in FINISHED:
            return job
        if time.monotonic() - started > timeout:
            raise SageMakerError(f"training job {name} is still {status} after {timeout:g} s")
        time.sleep(poll)


def register_job(clients: Clients, settings: SageMakerSettings, store: Store, name: str,
                 model: str | None = None) -> str:
    """Publish a completed job's model to the store; returns the new version."""
    from sagemaker.core.resources import TrainingJob

    job = TrainingJob.get(training_job_name=name, region=settings.region)
    if job.training_job_status != "Completed":
        raise SageMakerError(f"training job {name} is {job.training_job_status}, not Completed"
                             f": {getattr(job, 'failure_reason', None) or 'no reason given'}")
    hps = job.hyper_parameters or {}
    return register_artifact(clients, store, job.model_artifacts.s3_model_artifacts,
                             model or hps.get("model", "classifier").strip('"'),
                             {"training_job": name, "training_job_arn": job.training_job_arn})


def register_artifact(clients: Clients, store: Store, artifact_url: str, model: str,
                      source: dict | None = None) -> str:
    """Publish a model.tar.gz from S3 (model.pt, card.json, ...) as the next version."""
    bucket, key = split_s3(artifact_url)
    with tempfile.TemporaryDirectory(prefix="sieve-register-") as folder:
        archive = Path(folder) / "model.tar.gz"
        clients.s3.download_file(bucket, key, str(archive))
        unpacked = safe_extract(archive, Path(folder) / "model")
        if not (unpacked / "model.pt").is_file() or not (unpacked / CARD).is_file():
            raise SageMakerError(f"{artifact_url} holds no model.pt and card.json: "
                                 "not the output of `python -m training.train`")
        card = json.loads((unpacked / CARD).read_text())
        if card.get("name") not in (None, model):
            raise SageMakerError(f"{artifact_url} holds a {card['name']}, not a {model}")
        card["sagemaker"] = {"artifact": artifact_url, **(source or {})}
        files = {p.name: p for p in unpacked.iterdir()
                 if p.is_file() and p.name not in (CARD, MANIFEST)}
        return store.publish(model, files, card)
