"""Train the classifier or the filter and publish the result to the model store.

Examples:
  python -m training.train --train                          # classifier on Fashion-MNIST
  python -m training.train --train --model filter           # the yes/no filter
  python -m training.train --download-data                  # only fetch and verify the data
  python -m training.train --train --epochs 3 --optimizer adamw --lr 0.003
  python -m training.train --train --load-weights var/models/classifier/v1/model.pt
  python -m training.train --train --data-dir ~/data/hymenoptera_data --epochs 30
  python -m training.train --train --data-dir ~/data/hymenoptera_data --arch resnet18 \
      --weights DEFAULT --freeze-backbone --epochs 5
  python -m training.train --train --model filter --data-dir ~/data/hymenoptera_data \
      --outliers-dir ~/data/not-insects

Inside a SageMaker training job (SM_MODEL_DIR set) --train is implied, the data comes from
SM_CHANNEL_TRAINING and the model goes to SM_MODEL_DIR; see docs/deployment.md.
"""

import argparse
import logging
import shlex
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import torch

from sieve.cli import HelpFormatter
from sieve.config import ROOT, get_settings
from sieve.store import StoreError, open_store
from training import checkpoint, engine, filtering, outliers, photo_filter, plots, uploads
from training.augment import augmentation
from training.backbones import WeightsError
from training.data import DataError, DataSet, Split, load_dataset
from training.metrics import confusion_matrix, per_class_accuracy
from training.models import (
    ARCH_OPTIONS,
    architecture,
    count_all_parameters,
    count_parameters,
    create,
)
from training.options import add_options, fill_defaults
from training.preprocess import FASHION_MNIST

log = logging.getLogger("training")


def get_args_parser() -> argparse.ArgumentParser:
    """The command line: usage and examples from this module, options from `training.options`."""
    parser = argparse.ArgumentParser(
        prog="python -m training.train",
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n", 2)[2],
        formatter_class=HelpFormatter,
    )
    add_options(parser)
    return parser


class TrainError(RuntimeError):
    """A problem with the run's options that the user can fix."""


class Progress:
    """Hooks that follow a run (training jobs report through them); these do nothing.

    Any hook may raise to stop the run: nothing is published after that.
    """

    def stage(self, name: str) -> None:
        """The run enters a stage: loading data, training, testing, publishing."""

    def step(self, epoch: int, budget: engine.Budget, loss: float, accuracy: float) -> None:
        """After each training step, with the batch's loss and accuracy."""

    def epoch(self, entry: dict) -> None:
        """After each epoch, with its line of the history (train and val metrics)."""

    def published(self, version: str, card: dict) -> None:
        """The new version is in the model store."""


def main(args: argparse.Namespace, progress: Progress | None = None) -> int:
    """Fetch data, train, evaluate on the test split and publish; returns an exit code."""
    if not (args.train or args.download_data):
        raise TrainError("nothing to do: pass --train (and --download-data to fetch the data)")
    progress = progress or Progress()
    fill_defaults(args)
    _check_network(args)
    settings = get_settings()
    progress.stage("loading data")
    data = load_dataset(args.data_dir, args.data_url, download=args.download_data,
                        val_size=args.val_size, seed=args.seed, image_size=args.image_size,
                        settings=settings)
    log.info("data: %s (%s): %d train, %d val, %d test images, %d classes%s", data.name,
             data.source, len(data.train), len(data.val), len(data.test), len(data.classes),
             f", {data.skipped} unreadable files skipped" if data.skipped else "")
    if not args.train:
        return 0
    _configure_torch(args)
    if args.subset:
        data.train = Split(data.train.images[: args.subset], data.train.labels[: args.subset])
    store = open_store(args.model_store or settings.model_store_url)
    with tempfile.TemporaryDirectory(prefix="sieve-train-") as workdir:
        files, card = run_training(args, data, Path(workdir), progress)
        progress.stage("publishing")
        version = store.publish(args.model, files, card)
    log.info("published %s %s to %s", args.model, version, store.location(args.model, version))
    progress.published(version, card)
    return 0


def _check_network(args: argparse.Namespace) -> None:
    """Refuse network options that do not fit together."""
    if args.arch == "cnn" and (args.weights or args.freeze_backbone):
        raise TrainError("--weights and --freeze-backbone are for torchvision backbones: "
                         f"pass --arch {' or '.join(a for a in ARCH_OPTIONS if a != 'cnn')}")
    if args.freeze_backbone and not (args.weights or args.load_weights):
        raise TrainError("--freeze-backbone keeps the backbone as it starts: give it "
                         "--weights (or --load-weights) to start from")


def _configure_torch(args: argparse.Namespace) -> None:
    """Seed, threads and device."""
    torch.manual_seed(args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise TrainError("--device cuda: no CUDA device is available here")


def run_training(args: argparse.Namespace, data: DataSet, workdir: Path,
                 progress: Progress | None = None) -> tuple[dict, dict]:
    """Train one model; return its artifact files and model card."""
    progress = progress or Progress()
    is_filter = args.model == "filter"
    prep = data.preprocessing
    if is_filter and prep.mode == "RGB":
        fdata = photo_filter.filter_data(data, args.seed, args.outlier_ratio, args.outliers_dir)
        train, val, classes = fdata.train, fdata.val, ["outlier", "in-domain"]
    elif args.outliers_dir:
        raise TrainError("--outliers-dir is for the filter of an image-folder data set")
    elif is_filter:
        fdata = filtering.filter_data(data, args.seed, args.outlier_ratio,
                                       upload_share=args.upload_share,
                                       calibration_per_kind=args.upload_calibration)
        train, val, classes = fdata.train, fdata.val, ["outlier", "in-domain"]
    else:
        renders = uploads.training_renders(data.train.images, prep, args.upload_share,
                                           args.seed)
        train = Split(torch.cat([data.train.images, renders]),
                      torch.cat([data.train.labels, data.train.labels[:len(renders)]]))
        val, classes = data.val, data.classes
    arch = architecture(prep.channels, 1 if is_filter else len(classes), args.width,
                        name=ARCH_OPTIONS[args.arch])
    model = create(arch, resolve_weights(args), args.freeze_backbone)
    model = model.to(args.device).to(memory_format=torch.channels_last)
    optimizer = _optimizer(args, model)
    if args.load_weights:
        _load_weights(args, model, optimizer, arch, classes)
    progress.stage("training")
    history, seconds, steps = _fit(args, model, optimizer, train, val, prep, progress)
    progress.stage("testing")
    if is_filter:
        metrics, pictures = _filter_test(args, model, fdata, prep, workdir)
    else:
        metrics, pictures = _classifier_test(args, model, data, workdir)
    plots.training_curves(history, workdir / "curves.png", f"{args.model} on {data.name}")
    extra = {"threshold": metrics["threshold"]} if is_filter else {}
    checkpoint.save(workdir / "model.pt", model, task=args.model, architecture=arch,
                    classes=classes, preprocessing=prep.to_dict(), optimizer=args.optimizer,
                    optimizer_state=optimizer.state_dict(), epochs=len(history), **extra)
    card = _card(args, data, arch, model, classes, metrics, history, seconds, steps, extra)
    files = {"model.pt": workdir / "model.pt", "curves.png": workdir / "curves.png"}
    files.update({p.name: p for p in pictures})
    return files, card


def resolve_weights(args: argparse.Namespace) -> str | None:
    """--weights as `models.create` takes it: `store:<model>/<version or alias>` becomes the
    model.pt of that published version (its backbone, not its head, is used)."""
    if not args.weights or not args.weights.startswith("store:"):
        return args.weights
    name, _, ref = args.weights.removeprefix("store:").partition("/")
    store = open_store(args.model_store or get_settings().model_store_url)
    return str(store.open(name, store.resolve(name, ref or None)) / "model.pt")


def _optimizer(args: argparse.Namespace, model: torch.nn.Module) -> torch.optim.Optimizer:
    """The optimizer named on the command line."""
    params = [p for p in model.parameters() if p.requires_grad]  # not a frozen backbone
    if args.optimizer == "sgd":
        return torch.optim.SGD(params, lr=args.lr, momentum=0.9, nesterov=True,
                               weight_decay=args.weight_decay)
    if args.optimizer == "adam":
        return torch.optim.Adam(params, lr=args.lr, weight_decay=args.weight_decay)
    return torch.optim.AdamW(params, lr=args.lr, weight_decay=args.weight_decay)


def _load_weights(args, model, optimizer, arch: dict, classes: list[str]) -> None:
    """Start from a checkpoint; its optimizer state too when the optimizer matches."""
    saved = checkpoint.read(args.load_weights)
    checkpoint.load_into(model, saved, arch, classes, str(args.load_weights))
    if saved.get("optimizer") == args.optimizer and saved.get("optimizer_state"):
        optimizer.load_state_dict(saved["optimizer_state"])
        for group in optimizer.param_groups:
            group["lr"] = args.lr
    log.info("loaded weights from %s", args.load_weights)


def _fit(args, model, optimizer, train: Split, val: Split, prep,
         progress: Progress) -> tuple[list, float, int]:
    """Epoch loop with a metrics line per epoch; returns history, seconds and steps."""
    epochs = args.epochs
    if args.time_limit:
        epochs = max(epochs, 1000)  # the clock ends the run, not the epoch count
    steps_per_epoch = -(-len(train) // args.batch_size)
    budget = engine.Budget(total_steps=epochs * steps_per_epoch, seconds=args.time_limit)
    generator = torch.Generator().manual_seed(args.seed)
    augment = augmentation(prep, args.erase)
    history = []
    for epoch in range(1, epochs + 1):
        result = engine.train_one_epoch(
            model, train.images, train.labels, optimizer, budget, args.lr, prep, augment,
            generator, args.batch_size, args.label_smoothing, f"epoch {epoch}", args.device,
            args.clip_grad,
            on_step=lambda loss, acc, e=epoch: progress.step(e, budget, loss, acc))
        if result.images == 0:
            break
        val_metrics = engine.evaluate(model, val.images, val.labels, prep, device=args.device)
        history.append({"epoch": epoch, "train_loss": result.loss,
                        "train_accuracy": result.accuracy, "val_loss": val_metrics["loss"],
                        "val_accuracy": val_metrics["accuracy"], "seconds": result.seconds})
        progress.epoch(history[-1])
        log.info("epoch %d: train loss %.4f acc %.4f | val loss %.4f acc %.4f | lr %.4g | "
                 "%.0f s (%.0f img/s)", epoch, result.loss, result.accuracy,
                 val_metrics["loss"], val_metrics["accuracy"],
                 optimizer.param_groups[0]["lr"], result.seconds,
                 result.images / max(result.seconds, 1e-9))
        if budget.exhausted():
            break
    return history, time.monotonic() - budget.started, budget.step


def _classifier_test(args, model, data: DataSet, workdir: Path) -> tuple[dict, list[Path]]:
    """Accuracy, per-class accuracy and confusion matrix on the test split."""
    result = engine.evaluate(model, data.test.images, data.test.labels, data.preprocessing,
                             device=args.device)
    predicted = result["probabilities"].argmax(1)
    matrix = confusion_matrix(data.test.labels, predicted, len(data.classes))
    picture = plots.confusion(matrix, data.classes, workdir / "confusion.png",
                              f"Test accuracy {result['accuracy']:.2%}")
    log.info("test accuracy %.4f on %d images", result["accuracy"], len(data.test))
    metrics = {"test_accuracy": result["accuracy"], "test_loss": result["loss"],
               "per_class_accuracy": per_class_accuracy(matrix, data.classes),
               "confusion_matrix": matrix}
    labels = data.test.labels
    for kind, (images, chosen) in _upload_tests(args, data.preprocessing, data.test.images).items():
        probs = engine.predict(model, images, data.preprocessing, device=args.device)
        accuracy = float((probs.argmax(1) == labels[chosen]).float().mean())
        metrics.setdefault("uploads", {})[kind] = {"accuracy": accuracy}
        log.info("  uploads %-14s accuracy %.4f", kind, accuracy)
    return metrics, [picture]


def _upload_tests(args, prep, images) -> dict:
    """The upload-shaped test set (Fashion-MNIST preset only): kind -> (images, slice)."""
    if prep != FASHION_MNIST or args.upload_tests <= 0:
        return {}
    return uploads.evaluation_set(images, args.seed, args.upload_tests)


def _filter_test(args, model, fdata, prep, workdir: Path) -> tuple[dict, list[Path]]:
    """Threshold on validation, then acceptance and AUROC on test and held-out outliers."""
    if isinstance(fdata, photo_filter.PhotoFilterData):
        return _photo_filter_test(args, model, fdata, prep, workdir)
    prep_kw = {"prep": prep, "device": args.device}
    in_val = engine.predict(model, fdata.val.images[fdata.val.labels == 1], **prep_kw)
    in_test = engine.predict(model, fdata.test_in_domain, **prep_kw)
    scores = {k: engine.predict(model, v, **prep_kw) for k, v in fdata.test_outliers.items()}
    calibration = {k: engine.predict(model, v, **prep_kw) for k, v in fdata.calibration.items()}
    threshold = filtering.pick_threshold(in_val, args.accept_rate, calibration,
                                         args.upload_accept_rate)
    metrics = {**filtering.report(in_test, scores, threshold),
               "target_acceptance": args.accept_rate}
    if calibration:
        metrics["target_upload_acceptance"] = args.upload_accept_rate
    picture = _scores_picture(in_test, scores, outliers.HELD_OUT_KINDS, metrics["threshold"],
                              workdir / "scores.png", "Filter scores on test data")
    log.info("filter: threshold %.4f accepts %.2f%% of in-domain test images; held-out "
             "outliers: AUROC %.4f, %.2f%% rejected", metrics["threshold"],
             100 * metrics["in_domain_acceptance"], metrics["held_out_auroc"],
             100 * metrics["held_out_rejection_rate"])
    for kind, row in metrics["kinds"].items():
        log.info("  %-22s %s rejected %6.2f%%  AUROC %.4f", kind,
                 "held out" if row["held_out"] else "trained ", 100 * row["rejection_rate"],
                 row["auroc"])
    for kind, (images, _) in _upload_tests(args, prep, fdata.test_in_domain).items():
        accepted = float((engine.predict(model, images, **prep_kw) >= threshold).float().mean())
        metrics.setdefault("uploads", {})[kind] = {"acceptance": accepted}
        log.info("  uploads %-14s accepted %6.2f%%", kind, 100 * accepted)
    return metrics, [picture]


def _scores_picture(in_scores, scores: dict, held_out, threshold: float, path: Path,
                    title: str) -> Path:
    """The filter's score histogram: in-domain images, each held-out kind, the trained kinds."""
    shown = {f"{k} (held out)": v for k, v in scores.items() if k in held_out}
    shown["all trained kinds"] = torch.cat([v for k, v in scores.items() if k not in held_out])
    return plots.filter_scores(in_scores, shown, threshold, path, title)


def _photo_filter_test(args, model, fdata, prep, workdir: Path) -> tuple[dict, list[Path]]:
    """The photo filter's acceptance of unseen domain photos and AUROC on held-out negatives."""
    metrics, in_scores, scores = photo_filter.evaluate(model, fdata, prep, args.accept_rate,
                                                       args.device)
    picture = _scores_picture(in_scores, scores, fdata.held_out, metrics["threshold"],
                              workdir / "scores.png", "Filter scores on unseen images")
    log.info("filter: threshold %.4f accepts %.2f%% of %d unseen domain photos; held-out "
             "negatives: AUROC %.4f, %.2f%% rejected", metrics["threshold"],
             100 * metrics["in_domain_acceptance"], metrics["acceptance_images"],
             metrics["held_out_auroc"], 100 * metrics["held_out_rejection_rate"])
    return metrics, [picture]


def _card(args, data, arch, model, classes, metrics, history, seconds, steps, extra) -> dict:
    """The model card: everything a person needs to know about this model."""
    return {
        "name": args.model,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "architecture": {**arch, "parameters": count_all_parameters(model),
                         "trainable_parameters": count_parameters(model)},
        "classes": classes,
        "data_classes": data.classes,
        "preprocessing": data.preprocessing.to_dict(),
        "data": {"name": data.name, "source": data.source, "checksum": data.checksum,
                 "train": len(data.train), "val": len(data.val), "test": len(data.test),
                 "skipped_files": data.skipped, "subset": args.subset},
        "training": {"epochs": len(history), "steps": steps, "seconds": round(seconds, 1),
                     "time_limit": args.time_limit, "optimizer": args.optimizer,
                     "lr": args.lr, "weight_decay": args.weight_decay,
                     "batch_size": args.batch_size, "label_smoothing": args.label_smoothing,
                     "erase": args.erase, "clip_grad": args.clip_grad,
                     "seed": args.seed, "device": args.device,
                     "threads": torch.get_num_threads(),
                     "load_weights": str(args.load_weights) if args.load_weights else None,
                     "weights": args.weights, "freeze_backbone": args.freeze_backbone,
                     "outliers_dir": str(args.outliers_dir) if args.outliers_dir else None},
        "metrics": metrics,
        "history": history,
        "command": shlex.join(["python", "-m", "training.train", *getattr(args, "argv", [])]),
        "code_version": code_version(),
        "versions": {"torch": torch.__version__, "python": sys.version.split()[0]},
        **extra,
    }


def code_version() -> str:
    """The git commit of the code (with -dirty for local changes), or SIEVE_CODE_VERSION."""
    if get_settings().code_version:
        return get_settings().code_version
    try:
        out = subprocess.run(["git", "describe", "--always", "--dirty", "--abbrev=12"],
                             cwd=ROOT, capture_output=True, text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return "unknown"  # not a git checkout, or git is not installed
    return out.stdout.strip() or "unknown"


def cli(argv: list[str] | None = None) -> int:
    """Parse arguments, run, and turn known errors into a one-line message and exit 2."""
    from training.sagemaker import environment as sagemaker  # no AWS imports in there

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    argv = list(sys.argv[1:] if argv is None else argv)
    if sagemaker.in_training_job():
        argv = sagemaker.job_argv(argv)
    args = get_args_parser().parse_args(argv)
    args.argv = argv
    scratch = sagemaker.apply(args) if sagemaker.in_training_job() else None
    try:
        code = main(args)
        if scratch is not None and code == 0:
            log.info("model written to %s", sagemaker.export(args, scratch))
        return code
    except (TrainError, DataError, StoreError, checkpoint.CheckpointError, WeightsError) as exc:
        log.error("error: %s", exc)
        return 2


if __name__ == "__main__":
    sys.exit(cli())
