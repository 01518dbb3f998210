"""Preview and time the outlier set.

Usage::

    python -m training.outliers --preview outliers.png
"""

import argparse
import logging
import time

import training.outliers as package
from training.outliers.dataset import TRAIN_KINDS, make_outliers, preview

log = logging.getLogger(__name__)


def get_args_parser() -> argparse.ArgumentParser:
    """Command-line options for previewing and timing the outlier set."""
    parser = argparse.ArgumentParser(
        prog="python -m training.outliers", description=package.__doc__.splitlines()[0]
    )
    parser.add_argument("--preview", metavar="PATH", help="write a PNG grid of samples per kind")
    parser.add_argument(
        "--n",
        type=int,
        default=0,
        help="time generating n training outliers (default: 0)",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    return parser


def main(args: argparse.Namespace) -> None:
    """Preview and/or time the outlier set."""
    if args.preview:
        preview(args.preview, seed=args.seed)
    if args.n:
        start = time.perf_counter()
        images = make_outliers(TRAIN_KINDS, args.n, args.seed)
        log.info(
            "%d outliers %s in %.1f s",
            len(images),
            tuple(images.shape),
            time.perf_counter() - start,
        )


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    main(get_args_parser().parse_args())
