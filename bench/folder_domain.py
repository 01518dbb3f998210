"""The photo-domain path: the small CNN against torchvision backbones on a folder of photos.

On the sample folder of `training.photo_folder` (three classes of Fashion-MNIST items
rendered as colour product photos, 80 training and 24 validation photos each), each
network trains as a classifier with the same options; the table gives seconds per epoch,
validation accuracy, and the forward-pass throughput of the published model as a serving
worker runs it (`Predictor.probabilities`: a batch of canonical images, with the mirror
image, on the CPU threads PyTorch takes).

    python -m bench.folder_domain --epochs 3 --image-size 64
    python -m bench.folder_domain --weights DEFAULT     # pretrained, where they can be fetched
"""

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from sieve.store import ModelStore
from training import train
from training.data import load_dataset
from training.photo_folder import make_photo_folder
from training.predict import Predictor

ARCHS = ("cnn", "resnet18", "mobilenet_v3_small")


def throughput(predictor: Predictor, images: torch.Tensor, batch: int, repeats: int) -> float:
    """Images per second of the serving forward pass on batches of `batch` images."""
    chunk = images[:batch]
    predictor.probabilities(chunk)  # warm-up
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        predictor.probabilities(chunk)
        times.append(time.perf_counter() - started)
    return len(chunk) / statistics.median(times)


def run(arch: str, folder: Path, store: Path, args: argparse.Namespace) -> dict:
    """Train one network on the folder and measure it; a row of the table."""
    options = ["--train", "--data-dir", str(folder), "--arch", arch, "--image-size",
               str(args.image_size), "--epochs", str(args.epochs), "--optimizer", "adam",
               "--batch-size", "32", "--model-store", str(store)]
    if args.weights and arch != "cnn":
        options += ["--weights", args.weights]
    started = time.monotonic()
    assert train.cli(options) == 0, f"training {arch} failed"
    wall = time.monotonic() - started
    version = ModelStore(store).latest("classifier")
    card = json.loads((store / "classifier" / version / "card.json").read_text())
    predictor = Predictor.from_store("classifier", version, ModelStore(store))
    data = load_dataset(folder, image_size=args.image_size)
    return {"arch": arch, "parameters": card["architecture"]["parameters"],
            "epoch_seconds": statistics.mean(h["seconds"] for h in card["history"]),
            "run_seconds": wall, "val_accuracy": card["metrics"]["test_accuracy"],
            "serving_images_per_s": throughput(predictor, data.val.images, args.batch, 5)}


def main(argv: list[str] | None = None) -> int:
    """Train and measure each network; print a Markdown table (and JSON with --json)."""
    parser = argparse.ArgumentParser(prog="python -m bench.folder_domain",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--archs", nargs="+", choices=ARCHS, default=list(ARCHS),
                        help="networks to compare (default: all)")
    parser.add_argument("--epochs", type=int, default=3, help="epochs each (default: 3)")
    parser.add_argument("--image-size", type=int, default=64,
                        help="input side in pixels (default: 64)")
    parser.add_argument("--weights", default=None,
                        help="backbone weights, e.g. DEFAULT (default: random initialisation)")
    parser.add_argument("--batch", type=int, default=32,
                        help="images per serving forward pass (default: 32)")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON too")
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory(prefix="sieve-bench-folder-") as tmp:
        folder = make_photo_folder(Path(tmp) / "products", load_dataset())
        for arch in args.archs:
            rows.append(run(arch, folder, Path(tmp) / f"store-{arch}", args))
    print(f"| network | parameters | s/epoch | val accuracy | serving img/s "
          f"(batch {args.batch}) |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r['arch']} | {r['parameters']:,} | {r['epoch_seconds']:.1f} | "
              f"{r['val_accuracy']:.3f} | {r['serving_images_per_s']:.0f} |")
    if args.json:
        print(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
