"""Print the metrics of a published model on a data set.

Examples:
  python -m training.evaluate                               # served classifier, Fashion-MNIST test
  python -m training.evaluate --model filter                # acceptance, rejection, AUROC
  python -m training.evaluate --model pipeline              # both, per upload kind
  python -m training.evaluate --model classifier --version v2 --split val
  python -m training.evaluate --data-dir ~/data/hymenoptera_data --json
"""

import argparse
import json
import logging
import sys
from pathlib import Path

from sieve.cli import HelpFormatter
from sieve.store import StoreError, open_store
from training import checkpoint, filtering, uploads
from training.data import DataError, load_dataset
from training.metrics import confusion_matrix, per_class_accuracy
from training.predict import Predictor

log = logging.getLogger("training")


def get_args_parser() -> argparse.ArgumentParser:
    """Options: which model and version, which data and split."""
    parser = argparse.ArgumentParser(
        prog="python -m training.evaluate", description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n", 2)[2],
        formatter_class=HelpFormatter)
    parser.add_argument("--model", choices=("classifier", "filter", "pipeline"),
                        default="classifier",
                        help="which model to evaluate; pipeline: the served filter, then the "
                             "served classifier, on the test split rendered as uploads "
                             "(training.uploads) and on outliers")
    parser.add_argument("--version", default=None,
                        help="model version or alias (default: the served version: the "
                             "production alias when set, else the latest)")
    parser.add_argument("--model-store", default=None,
                        help="model store (default: MODEL_STORE_URL, or var/models)")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="image-folder or Fashion-MNIST folder (default: Fashion-MNIST)")
    parser.add_argument("--data-url", default=None, help="overrides DATA_URL")
    parser.add_argument("--download-data", action="store_true",
                        help="download the data set when it is not on this machine yet")
    parser.add_argument("--split", choices=("train", "val", "test"), default="test",
                        help="which split to evaluate on")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the validation split and of the filter's outliers")
    parser.add_argument("--per-kind", type=int, default=1000,
                        help="pipeline: test images rendered per upload kind, and outliers "
                             "per outlier kind")
    parser.add_argument("--json", action="store_true", help="print the metrics as JSON")
    return parser


def main(args: argparse.Namespace) -> dict:
    """Compute and print the metrics; return them."""
    store = open_store(args.model_store)
    if args.model == "pipeline":
        return _pipeline(args, store)
    predictor = Predictor.from_store(args.model, args.version, store)
    prep = predictor.preprocessing
    data = load_dataset(args.data_dir, args.data_url, download=args.download_data,
                        seed=args.seed, image_size=prep.size)
    if data.preprocessing != prep:
        raise DataError(f"{args.model} {predictor.version} was trained on {prep}, "
                        f"this data set is prepared as {data.preprocessing}")
    split = getattr(data, args.split)
    if args.model == "filter":
        metrics = _filter_metrics(predictor, data, split, args.seed)
    else:
        metrics = _classifier_metrics(predictor, data, split)
    metrics = {"model": args.model, "version": predictor.version, "data": data.name,
               "split": args.split, "images": len(split), **metrics}
    print(json.dumps(metrics, indent=2) if args.json else _format(metrics))
    return metrics


def _classifier_metrics(predictor: Predictor, data, split) -> dict:
    """Accuracy, per-class accuracy and the confusion matrix."""
    if data.classes != predictor.classes:
        raise DataError(f"the model knows the classes {predictor.classes}, "
                        f"the data set has {data.classes}")
    probs = predictor.probabilities(split.images)
    predicted = probs.argmax(1)
    matrix = confusion_matrix(split.labels, predicted, len(data.classes))
    return {"accuracy": float((predicted == split.labels).float().mean()),
            "per_class_accuracy": per_class_accuracy(matrix, data.classes),
            "confusion_matrix": matrix}


def _filter_metrics(predictor: Predictor, data, split, seed: int) -> dict:
    """Acceptance of in-domain images, and rejection and AUROC per outlier kind."""
    outliers = filtering.test_outliers(data.preprocessing, seed)
    scores = {kind: predictor.probabilities(images) for kind, images in outliers.items()}
    in_scores = predictor.probabilities(split.images)
    return filtering.report(in_scores, scores, float(predictor.card["threshold"]))


def _pipeline(args: argparse.Namespace, store) -> dict:
    """Filter acceptance, classifier and end-to-end accuracy per upload kind; outliers."""
    filter_model = Predictor.from_store("filter", None, store)
    classify = Predictor.from_store("classifier", None, store)
    data = load_dataset(args.data_dir, args.data_url, download=args.download_data,
                        seed=args.seed, image_size=classify.preprocessing.size)
    if not data.preprocessing == filter_model.preprocessing == classify.preprocessing:
        raise DataError("the upload-shaped test set needs the Fashion-MNIST preset for "
                        "both models and the data")
    split = getattr(data, args.split)
    threshold = float(filter_model.card["threshold"])
    kinds = {}
    for kind, (images, chosen) in uploads.evaluation_set(split.images, args.seed,
                                                         args.per_kind).items():
        accepted = filter_model.probabilities(images) >= threshold
        correct = classify.probabilities(images).argmax(1) == split.labels[chosen]
        kinds[kind] = {"images": len(images),
                       "acceptance": float(accepted.float().mean()),
                       "classifier_accuracy": float(correct.float().mean()),
                       "end_to_end_accuracy": float((accepted & correct).float().mean())}
    scores = {kind: filter_model.probabilities(images) for kind, images in
              filtering.test_outliers(data.preprocessing, args.seed, args.per_kind).items()}
    outliers = filtering.report(filter_model.probabilities(split.images), scores, threshold)
    metrics = {"model": "pipeline", "filter": filter_model.version, "classifier": classify.version,
               "data": data.name, "split": args.split, "uploads": kinds,
               "plain_classifier_accuracy": float(
                   (classify.probabilities(split.images).argmax(1) == split.labels)
                   .float().mean()),
               "outliers": outliers}
    print(json.dumps(metrics, indent=2) if args.json else _format_pipeline(metrics))
    return metrics


def _format_pipeline(metrics: dict) -> str:
    """The per-kind table of the pipeline."""
    lines = [f"filter {metrics['filter']} then classifier {metrics['classifier']} on "
             f"{metrics['data']} {metrics['split']}, rendered as uploads",
             f"  {'kind':<14} {'images':>6} {'accepted':>9} {'classifier':>11} "
             f"{'end to end':>11}"]
    for kind, row in metrics["uploads"].items():
        lines.append(f"  {kind:<14} {row['images']:>6} {row['acceptance']:>9.2%} "
                     f"{row['classifier_accuracy']:>11.2%} {row['end_to_end_accuracy']:>11.2%}")
    lines.append(f"classifier accuracy on the whole plain split: "
                 f"{metrics['plain_classifier_accuracy']:.2%}")
    report = metrics["outliers"]
    lines.append(f"outliers at threshold {report['threshold']:.4f}:")
    return "\n".join(lines + _outlier_lines(report))


def _outlier_lines(report: dict) -> list[str]:
    """The held-out summary and one line per outlier kind of a filter report."""
    lines = [f"held-out outliers: AUROC {report['held_out_auroc']:.4f}, "
             f"{report['held_out_rejection_rate']:.2%} rejected"]
    for kind, row in report["kinds"].items():
        tag = "held out" if row["held_out"] else "trained "
        lines.append(f"  {kind:<22} {tag} rejected {row['rejection_rate']:7.2%}  "
                     f"AUROC {row['auroc']:.4f}")
    return lines


def _format(metrics: dict) -> str:
    """Human-readable lines."""
    lines = [(f"{metrics['model']} {metrics['version']} on {metrics['data']} "
             f"{metrics['split']} ({metrics['images']} images)")]
    if "accuracy" in metrics:
        lines.append(f"accuracy: {metrics['accuracy']:.4f}")
        for name, value in metrics["per_class_accuracy"].items():
            lines.append(f"  {name:<14} {value:.4f}")
        return "\n".join(lines)
    lines.append(f"threshold {metrics['threshold']:.4f}: "
                 f"{metrics['in_domain_acceptance']:.2%} of in-domain images accepted")
    return "\n".join(lines + _outlier_lines(metrics))


def cli(argv: list[str] | None = None) -> int:
    """Parse arguments and run; known errors become a one-line message and exit 2."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = get_args_parser().parse_args(argv)
    try:
        main(args)
    except (DataError, StoreError, checkpoint.CheckpointError) as exc:
        log.error("error: %s", exc)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(cli())
