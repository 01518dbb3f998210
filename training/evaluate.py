"""Print the metrics of a published model on a data set.

Examples:
  python -m training.evaluate                               # served classifier, Fashion-MNIST test
  python -m training.evaluate --model filter                # acceptance, rejection, AUROC
  python -m training.evaluate --model classifier --version v2 --split val
  python -m training.evaluate --data-dir ~/data/hymenoptera_data --json
"""

import argparse
import json
import logging
import sys
from pathlib import Path

from training import checkpoint, filtering
from training.data import DataError, load_dataset
from training.metrics import confusion_matrix, per_class_accuracy
from training.predict import Predictor
from training.store import StoreError, open_store
from training.train import HelpFormatter

log = logging.getLogger("training")


def get_args_parser() -> argparse.ArgumentParser:
    """Options: which model and version, which data and split."""
    parser = argparse.ArgumentParser(
        prog="python -m training.evaluate", description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n", 2)[2],
        formatter_class=HelpFormatter)
    parser.add_argument("--model", choices=("classifier", "filter"), default="classifier",
                        help="which model to evaluate")
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
    parser.add_argument("--json", action="store_true", help="print the metrics as JSON")
    return parser


def main(args: argparse.Namespace) -> dict:
    """Compute and print the metrics; return them."""
    store = open_store(args.model_store)
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
    lines.append(f"held-out outliers: AUROC {metrics['held_out_auroc']:.4f}, "
                 f"{metrics['held_out_rejection_rate']:.2%} rejected")
    for kind, row in metrics["kinds"].items():
        tag = "held out" if row["held_out"] else "trained "
        lines.append(f"  {kind:<22} {tag} rejected {row['rejection_rate']:7.2%}  "
                     f"AUROC {row['auroc']:.4f}")
    return "\n".join(lines)


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
