"""The options of `python -m training.train` and the per-model defaults they fall back on."""

import argparse
from pathlib import Path

from sieve.config import MODELS, OPTIMIZERS
from training.models import ARCH_OPTIONS
from training.uploads import CALIBRATION_PER_KIND

# Per-model defaults, tuned on Fashion-MNIST for a 2-core CPU (docs/training.md has the
# measurements): both train in about six to seven minutes each on a quiet machine.
MODEL_DEFAULTS = {
    "classifier": {"epochs": 14, "width": 16, "batch_size": 128, "erase": 0.5,
                   "lr": {"sgd": 0.1, "adam": 0.002, "adamw": 0.002}},
    "filter": {"epochs": 6, "width": 16, "batch_size": 256, "erase": 0.0,
               "lr": {"sgd": 0.05, "adam": 0.001, "adamw": 0.001}},
}
WEIGHT_DECAY = {"sgd": 5e-4, "adam": 0.0, "adamw": 0.05}


def _both(key: str) -> str:
    """Help text naming a per-model default."""
    c, f = MODEL_DEFAULTS["classifier"][key], MODEL_DEFAULTS["filter"][key]
    return f"(default: classifier {c}, filter {f})"


def add_options(parser: argparse.ArgumentParser) -> None:
    """Add the training options to `parser`, each with its default in the help text."""
    parser.add_argument("--model", choices=MODELS, default="classifier",
                        help="which model to train")
    parser.add_argument("--download-data", action="store_true",
                        help="download the data set when it is not on this machine yet")
    parser.add_argument("--train", action="store_true", help="train and publish a model")
    data = parser.add_argument_group("data")
    data.add_argument("--data-dir", type=Path, default=None,
                      help="an image-folder data set (train/<class>/*, val/<class>/*) or a "
                           "folder with the Fashion-MNIST files; default: Fashion-MNIST")
    data.add_argument("--data-url", default=None,
                      help="Fashion-MNIST mirror or a .zip/.tar.gz image-folder archive "
                           "(default: DATA_URL from the environment or .env)")
    data.add_argument("--val-size", type=int, default=5000,
                      help="Fashion-MNIST training images held out for validation")
    data.add_argument("--image-size", type=int, default=None,
                      help="side in pixels for image-folder data sets (default: 64 with "
                           "--arch cnn, 224 with a torchvision backbone)")
    data.add_argument("--subset", type=int, default=None,
                      help="train on the first N training images only, for quick runs "
                           "(default: all)")
    net = parser.add_argument_group("network")
    net.add_argument("--arch", choices=ARCH_OPTIONS, default="cnn",
                     help="the network: Sieve's small CNN, or a torchvision backbone with "
                          "its head replaced for the data set's classes")
    net.add_argument("--weights", default=None,
                     help="pretrained backbone weights: DEFAULT (or another torchvision "
                          "weights name), fetched into the torch cache; store:<model>/<version> "
                          "for a published model's backbone; or the path of a saved state "
                          "dict (default: none, random weights)")
    net.add_argument("--freeze-backbone", action="store_true",
                     help="train the backbone's head only (with --weights or --load-weights)")
    opt = parser.add_argument_group("optimisation")
    opt.add_argument("--epochs", type=int, default=None,
                     help=f"passes over the training data {_both('epochs')}")
    opt.add_argument("--time-limit", type=float, default=None,
                     help="seconds of training: the learning-rate schedule follows the "
                          "clock and training stops when the time is spent (default: no limit; "
                          "--epochs decides)")
    opt.add_argument("--optimizer", choices=OPTIMIZERS, default="sgd",
                     help="optimizer (SGD with Nesterov momentum 0.9)")
    opt.add_argument("--lr", type=float, default=None,
                     help="peak learning rate of the one-cycle schedule (default: with sgd "
                          "classifier 0.1, filter 0.05; with adam or adamw 0.002 and 0.001)")
    opt.add_argument("--weight-decay", type=float, default=None,
                     help="weight decay (default: sgd 5e-4, adam 0, adamw 0.05)")
    opt.add_argument("--batch-size", type=int, default=None,
                     help=f"images per step {_both('batch_size')}")
    opt.add_argument("--label-smoothing", type=float, default=0.1, help="label smoothing")
    opt.add_argument("--clip-grad", type=float, default=5.0,
                     help="largest gradient norm per step, which keeps short runs stable; "
                          "0 turns clipping off")
    opt.add_argument("--width", type=int, default=None,
                     help=f"channels of the first layer {_both('width')}")
    opt.add_argument("--erase", type=float, default=None,
                     help="share of training images with a random rectangle blacked out "
                          f"{_both('erase')}")
    opt.add_argument("--seed", type=int, default=0, help="random seed")
    opt.add_argument("--load-weights", type=Path, default=None,
                     help="start from this checkpoint (a model.pt) to resume or fine-tune "
                          "(default: none, start from random weights)")
    opt.add_argument("--upload-share", type=float, default=0.25,
                     help="training images also rendered as uploads (enlarged, JPEG, dark "
                          "on white, ...; Fashion-MNIST only), per data-set image; for the "
                          "filter, validation images too, where its threshold is picked")
    filt = parser.add_argument_group("filter")
    filt.add_argument("--accept-rate", type=float, default=0.995,
                      help="share of in-domain validation images the threshold accepts")
    filt.add_argument("--upload-accept-rate", type=float, default=0.985,
                      help="share of each kind of upload-shaped validation image "
                           "(Fashion-MNIST) the threshold accepts as well")
    filt.add_argument("--upload-calibration", type=int, default=CALIBRATION_PER_KIND,
                      help="validation images rendered per upload kind, at full size, to "
                           "pick the threshold on (Fashion-MNIST; 0: plain ones only)")
    filt.add_argument("--outlier-ratio", type=float, default=1.0,
                      help="outliers per in-domain training image")
    filt.add_argument("--outliers-dir", type=Path, default=None,
                      help="a folder of your own pictures the filter must turn away, "
                           "besides the generic outliers (image-folder data sets; "
                           "default: generic outliers only)")
    run_eval = parser.add_argument_group("test")
    run_eval.add_argument("--upload-tests", type=int, default=300,
                          help="test images rendered per upload kind for the model card "
                               "(Fashion-MNIST; 0: none)")
    run = parser.add_argument_group("run")
    run.add_argument("--model-store", default=None,
                     help="where to publish (default: MODEL_STORE_URL, or var/models)")
    run.add_argument("--device", default="cpu", help="cpu, cuda, or auto")
    run.add_argument("--threads", type=int, default=None,
                     help="CPU threads for PyTorch (default: all cores)")


def fill_defaults(args: argparse.Namespace) -> None:
    """Replace unset options by the defaults of the model being trained."""
    defaults = MODEL_DEFAULTS[args.model]
    for key in ("epochs", "width", "batch_size", "erase"):
        if getattr(args, key) is None:
            setattr(args, key, defaults[key])
    args.lr = args.lr or defaults["lr"][args.optimizer]
    if args.weight_decay is None:
        args.weight_decay = WEIGHT_DECAY[args.optimizer]
    if args.image_size is None:
        args.image_size = 64 if args.arch == "cnn" else 224
