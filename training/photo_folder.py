"""A sample photo domain: Fashion-MNIST items rendered as colour product photos into an
image folder (`train/<class>/`, `val/<class>/`), and a folder of other items as the
pictures its filter must turn away. For trying the photo-domain path (`--arch`,
`--outliers-dir`) without a photo collection at hand, and for its tests and benchmark.

Usage::

    python -m training.photo_folder var/data/products --outliers var/data/not-products
"""

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path

import torch

from training import uploads
from training.data import DataSet, load_dataset

log = logging.getLogger(__name__)

DOMAIN = ("Trouser", "Sneaker", "Bag")  # the sample domain's classes
OTHERS = ("Dress", "Shirt", "Sandal")  # what plays "not my domain"
KINDS = ("colour", "product_photo")  # upload renderings that give colour photos
PHOTO_SIDE = 96  # longest side of the rendered item, in pixels: small files, quick decoding


def _items(fashion: DataSet, name: str, split: str) -> torch.Tensor:
    """The Fashion-MNIST images of class `name` from `split` (uint8 (N, 28, 28))."""
    data = getattr(fashion, split)
    return data.images[data.labels == fashion.classes.index(name), 0]


def _write(path: Path, data: bytes) -> Path:
    """Write encoded image bytes with the suffix of their format."""
    path = path.with_suffix(".jpg" if data[:2] == b"\xff\xd8" else ".png")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def photo(image: torch.Tensor, index: int, seed: int = 0) -> bytes:
    """One Fashion-MNIST image rendered as a colour photo (JPEG or PNG bytes)."""
    return uploads.render(image.numpy(), KINDS[index % len(KINDS)], seed, index, PHOTO_SIDE)


def make_photo_folder(root: Path, fashion: DataSet, train: int = 80, val: int = 24,
                      classes: Sequence[str] = DOMAIN) -> Path:
    """train/<class>/ (from Fashion-MNIST's training split) and val/<class>/ (from its test
    split) of colour product photos; returns `root`."""
    for name in classes:
        for split, count, source in (("train", train, "train"), ("val", val, "test")):
            for i, image in enumerate(_items(fashion, name, source)[:count]):
                _write(root / split / name / f"{i:04d}", photo(image, i, seed=len(split)))
    return root


def make_outliers_dir(root: Path, fashion: DataSet, count: int = 60,
                      classes: Sequence[str] = OTHERS) -> Path:
    """A folder of photos of other items, for the filter's --outliers-dir; returns `root`."""
    for name in classes:
        for i, image in enumerate(_items(fashion, name, "train")[:count // len(classes)]):
            _write(root / name / f"{i:04d}", photo(image, i, seed=7))
    return root


def main(argv: list[str] | None = None) -> int:
    """Write the sample folder (and the outliers folder when asked)."""
    parser = argparse.ArgumentParser(prog="python -m training.photo_folder",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="where to write train/ and val/")
    parser.add_argument("--outliers", type=Path, default=None,
                        help="also write pictures of other items here (default: none)")
    parser.add_argument("--train", type=int, default=80,
                        help="training photos per class (default: 80)")
    parser.add_argument("--val", type=int, default=24,
                        help="validation photos per class (default: 24)")
    args = parser.parse_args(argv)
    fashion = load_dataset()
    make_photo_folder(args.folder, fashion, args.train, args.val)
    log.info("wrote %s: %s, %d training and %d validation photos each", args.folder,
             ", ".join(DOMAIN), args.train, args.val)
    if args.outliers:
        make_outliers_dir(args.outliers, fashion)
        log.info("wrote %s: photos of %s", args.outliers, ", ".join(OTHERS))
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    raise SystemExit(main())
