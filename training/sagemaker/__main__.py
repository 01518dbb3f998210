"""Deploy Sieve models to AWS SageMaker, and train them there.

Examples:
  python -m training.sagemaker package classifier production --filter -o model.tar.gz
  python -m training.sagemaker upload model.tar.gz
  python -m training.sagemaker deploy --model classifier --ref production --filter
  python -m training.sagemaker deploy --model-data s3://bucket/sagemaker/.../model.tar.gz
  python -m training.sagemaker deploy --async-output s3://bucket/sagemaker/async ...
  python -m training.sagemaker wait
  python -m training.sagemaker invoke shirt.png
  python -m training.sagemaker rollback
  python -m training.sagemaker delete
  python -m training.sagemaker train --data s3://bucket/data/fashion/ --hp epochs=3 --register
  python -m training.sagemaker train --data s3://bucket/data/hymenoptera/ --hp arch=resnet18 \
      --backbone s3://bucket/weights/resnet18.pt --hp freeze-backbone=true

Settings (environment or .env): SAGEMAKER_ROLE_ARN, SAGEMAKER_REGION (else AWS_REGION,
AWS_DEFAULT_REGION, us-east-1), SAGEMAKER_INSTANCE_TYPE (ml.m5.large),
SAGEMAKER_TRAINING_INSTANCE_TYPE, SAGEMAKER_IMAGE_URI and SAGEMAKER_TRAINING_IMAGE_URI
(the region's AWS PyTorch 2.6 containers), SAGEMAKER_S3_URL (s3://<model store bucket>/
sagemaker when the model store is on S3), SAGEMAKER_ENDPOINT_NAME (sieve).
See docs/deployment.md.
"""

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import botocore.exceptions

from sieve.cli import HelpFormatter
from sieve.store import StoreError, open_store
from training.sagemaker import endpoints, jobs, release
from training.sagemaker.config import SageMakerError, SageMakerSettings, load_sagemaker_settings
from training.sagemaker.package import build_model_archive


def _common(parser: argparse.ArgumentParser, settings: SageMakerSettings) -> None:
    """Options every command shares."""
    parser.add_argument("--region", default=settings.region, help="AWS region")
    parser.add_argument("--role", default=settings.role_arn,
                        help="ARN of the IAM role SageMaker assumes (default: SAGEMAKER_ROLE_ARN; "
                             "required to create models and training jobs)")
    parser.add_argument("--s3-url", default=settings.s3_url,
                        help="s3://bucket/prefix for archives, job outputs and async results "
                             "(default: SAGEMAKER_S3_URL, else s3://<bucket of an S3 model "
                             "store>/sagemaker)")
    parser.add_argument("--model-store", default=None,
                        help="model store URL (default: MODEL_STORE_URL, or var/models)")
    parser.add_argument("--timeout", type=float, default=1800,
                        help="seconds to wait for an endpoint or job")
    parser.add_argument("--poll", type=float, default=15, help="seconds between status checks")


def _endpoint(parser: argparse.ArgumentParser, settings: SageMakerSettings) -> None:
    parser.add_argument("--endpoint", default=settings.endpoint_name,
                        help="endpoint name (SAGEMAKER_ENDPOINT_NAME)")


def _model_ref(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--filter", action="store_true",
                        help="package the filter in front of the classifier")
    parser.add_argument("--filter-ref", default=None,
                        help="filter version or alias (default: the served filter)")


def get_args_parser(settings: SageMakerSettings | None = None) -> argparse.ArgumentParser:
    """The commands and their options, each with its default."""
    settings = settings or load_sagemaker_settings()
    parser = argparse.ArgumentParser(prog="python -m training.sagemaker",
                                     description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=HelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, text: str) -> argparse.ArgumentParser:
        one = sub.add_parser(name, help=text, description=text, formatter_class=HelpFormatter)
        _common(one, settings)
        return one

    pack = command("package", "build model.tar.gz from a registered model version")
    pack.add_argument("name", nargs="?", default="classifier", help="model name")
    pack.add_argument("ref", nargs="?", default=None,
                      help="version (v3) or alias (production); default: the served version")
    _model_ref(pack)
    pack.add_argument("-o", "--output", type=Path, default=Path("model.tar.gz"),
                      help="where to write the archive")
    up = command("upload", "upload a model.tar.gz to S3 and print its URL")
    up.add_argument("archive", type=Path, help="the model.tar.gz")
    up.add_argument("--label", default="model", help="name of the folder prefix in S3")
    dep = command("deploy", "create the endpoint, or update it (rolled back if that fails)")
    _endpoint(dep, settings)
    dep.add_argument("--model-data", default=None,
                     help="s3:// URL of a model.tar.gz; default: package and upload --model")
    dep.add_argument("--model", default="classifier", help="model to package")
    dep.add_argument("--ref", default=None,
                     help="version or alias to package (default: the served version)")
    _model_ref(dep)
    dep.add_argument("--instance-type", default=settings.instance_type,
                     help="instance type (SAGEMAKER_INSTANCE_TYPE)")
    dep.add_argument("--instance-count", type=int, default=1, help="instances")
    dep.add_argument("--image-uri", default=settings.image_uri,
                     help="serving container (SAGEMAKER_IMAGE_URI; default: the region's "
                          "AWS PyTorch 2.6 CPU inference image)")
    dep.add_argument("--async-output", default=None,
                     help="s3:// prefix: make an asynchronous endpoint that writes results "
                          "there (default: real-time)")
    for name, text in (("wait", "wait until the endpoint settles, showing its status"),
                       ("rollback", "switch the endpoint back to its previous configuration"),
                       ("delete", "delete the endpoint, its configurations and models"),
                       ("describe", "print the endpoint's description")):
        _endpoint(command(name, text), settings)
    inv = command("invoke", "send an image file to the endpoint and print the prediction")
    _endpoint(inv, settings)
    inv.add_argument("image", type=Path, help="image file (PNG, JPEG, ...)")
    inv.add_argument("--async", dest="asynchronous", action="store_true",
                     help="asynchronous endpoint: upload the image, wait for the result")
    inv.add_argument("--json", dest="as_json", action="store_true",
                     help="send the image base64-encoded in a JSON body instead of as is")
    inv.add_argument("--which", choices=("both", "filter", "classifier"), default=None,
                     help="which models the image goes through (sent as JSON; default: "
                          "both when the filter is packaged)")
    tr = command("train", "run python -m training.train as a SageMaker training job")
    tr.add_argument("--data", required=True,
                    help="s3:// prefix of the training channel (an image folder or the "
                         "Fashion-MNIST files)")
    tr.add_argument("--model", choices=("classifier", "filter"), default="classifier",
                    help="what to train")
    tr.add_argument("--backbone", default=None,
                    help="s3:// URL of a state dict for --hp arch=resnet18 (the `backbone` "
                         "channel, used as --weights; default: none)")
    tr.add_argument("--outliers", default=None,
                    help="s3:// prefix of pictures the filter must turn away (the `outliers` "
                         "channel, used as --outliers-dir; default: none)")
    tr.add_argument("--hp", action="append", default=[], metavar="KEY=VALUE",
                    help="a training option, e.g. epochs=3 (repeatable)")
    tr.add_argument("--instance-type", default=settings.training_instance_type,
                    help="instance type (SAGEMAKER_TRAINING_INSTANCE_TYPE)")
    tr.add_argument("--image-uri", default=settings.training_image_uri,
                    help="training container (SAGEMAKER_TRAINING_IMAGE_URI; default: the "
                         "region's AWS PyTorch 2.6 training image)")
    tr.add_argument("--no-wait", action="store_true", help="submit and return")
    tr.add_argument("--register", action="store_true",
                    help="publish the job's model to the model store when it completes")
    reg = command("register", "publish a completed training job's model to the model store")
    reg.add_argument("job", help="training job name")
    reg.add_argument("--model", default=None, help="model name (default: the job's)")
    return parser


def run(args: argparse.Namespace, settings: SageMakerSettings) -> object:
    """Run one command; returns what to print."""
    settings = replace(settings, region=args.region, role_arn=args.role, s3_url=args.s3_url,
                       **({"image_uri": args.image_uri}
                          if args.command == "deploy" else {}),
                       **({"training_image_uri": args.image_uri}
                          if args.command == "train" else {}))
    if args.command == "package":
        return build_model_archive(open_store(args.model_store), args.name, args.ref,
                                   args.output, args.filter_ref, args.filter)
    clients = endpoints.Clients.create(settings)
    wait = {"timeout": args.timeout, "poll": args.poll}
    if args.command == "upload":
        return endpoints.upload(clients, args.archive, settings.require_s3_url() + "/models",
                                args.label)
    if args.command == "deploy":
        return _deploy(args, settings, clients, wait)
    if args.command == "wait":
        return endpoints.wait(clients, args.endpoint, **wait)
    if args.command == "rollback":
        return endpoints.rollback(clients, args.endpoint, **wait)
    if args.command == "delete":
        return endpoints.delete(clients, args.endpoint)
    if args.command == "describe":
        return endpoints.describe(clients, args.endpoint) or f"no endpoint {args.endpoint}"
    if args.command == "invoke":
        if args.asynchronous:
            return endpoints.invoke_async(clients, args.endpoint, args.image,
                                          settings.require_s3_url(), args.as_json, args.which,
                                          **wait)
        return endpoints.invoke(clients, args.endpoint, args.image, args.as_json, args.which)
    if args.command == "train":
        return _train(args, settings, clients, wait)
    return jobs.register_job(clients, settings, open_store(args.model_store), args.job,
                             args.model)


def _deploy(args, settings: SageMakerSettings, clients, wait: dict) -> dict:
    """Deploy --model-data as it is, or package and upload --model first."""
    if args.model_data is None:
        return release.deploy_registered(
            clients, settings, open_store(args.model_store), args.endpoint, args.model,
            args.ref, args.filter, args.filter_ref, args.instance_type, args.instance_count,
            args.async_output, **wait)
    return endpoints.deploy(clients, settings, args.endpoint, args.model_data,
                            args.instance_type, args.instance_count, args.async_output, {},
                            **wait)


def _train(args, settings: SageMakerSettings, clients, wait: dict) -> dict:
    """Submit the job; wait for it and register its model when asked."""
    hps = dict(item.split("=", 1) for item in args.hp)
    channels = {name: url for name, url in (("backbone", args.backbone),
                                            ("outliers", args.outliers)) if url}
    job = jobs.submit(clients, settings, args.data, args.model, hps, args.instance_type,
                      int(args.timeout), channels=channels)
    answer = {"training_job": job.training_job_name}
    if args.no_wait:
        return answer
    job = jobs.wait(settings, job.training_job_name, **wait)
    answer.update(status=job.training_job_status,
                  artifact=job.model_artifacts.s3_model_artifacts if job.model_artifacts
                  else None)
    if job.training_job_status != "Completed":
        raise SageMakerError(f"training job {job.training_job_name} is "
                             f"{job.training_job_status}: {job.failure_reason}")
    if args.register:
        answer["version"] = jobs.register_job(clients, settings, open_store(args.model_store),
                                              job.training_job_name, args.model)
    return answer


def main(argv: list[str] | None = None) -> int:
    """Parse, run, print JSON (or the URL); errors are one line on stderr and exit 2."""
    settings = load_sagemaker_settings()
    args = get_args_parser(settings).parse_args(argv)
    try:
        value = run(args, settings)
    except (SageMakerError, StoreError, FileNotFoundError, ValueError,
            botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(value if isinstance(value, str) else json.dumps(value, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
