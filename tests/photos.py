"""Test helpers for photo domains: Fashion-MNIST items rendered as colour product photos
into an image folder (train/<class>/, val/<class>/), and pretrained-looking state dicts
that the tests write themselves (nothing is downloaded)."""

from pathlib import Path

import torch
from torchvision import models

from training import uploads

# Classes of the test domain, and those that play "not my domain".
DOMAIN = ("Trouser", "Sneaker", "Bag")
OTHERS = ("Dress", "Shirt", "Sandal")
KINDS = ("colour", "product_photo")
PHOTO_SIDE = 96  # longest side of the rendered item, in pixels: small files, quick decoding


def _items(fashion, name: str, split: str) -> torch.Tensor:
    """The Fashion-MNIST images of class `name` from `split` (uint8 (N, 28, 28))."""
    data = getattr(fashion, split)
    return data.images[data.labels == fashion.classes.index(name), 0]


def _write(path: Path, data: bytes) -> Path:
    """Write encoded image bytes with the suffix of their format."""
    path = path.with_suffix(".jpg" if data[:2] == b"\xff\xd8" else ".png")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def photo(image, index: int, seed: int = 0) -> bytes:
    """One Fashion-MNIST image rendered as a colour photo (JPEG or PNG bytes)."""
    return uploads.render(image.numpy(), KINDS[index % len(KINDS)], seed, index, PHOTO_SIDE)


def make_photo_folder(root: Path, fashion, train: int = 80, val: int = 24,
                      classes=DOMAIN) -> Path:
    """train/<class>/ and val/<class>/ of colour product photos; returns `root`."""
    for name in classes:
        for split, count, source in (("train", train, "train"), ("val", val, "test")):
            for i, image in enumerate(_items(fashion, name, source)[:count]):
                _write(root / split / name / f"{i:04d}", photo(image, i, seed=len(split)))
    return root


def make_outliers_dir(root: Path, fashion, count: int = 60, classes=OTHERS) -> Path:
    """A folder of photos the domain's filter must turn away (other garments)."""
    for name in classes:
        for i, image in enumerate(_items(fashion, name, "train")[:count // len(classes)]):
            _write(root / name / f"{i:04d}", photo(image, i, seed=7))
    return root


def write_state_dict(path: Path, name: str = "resnet18", seed: int = 0) -> Path:
    """An ImageNet-shaped state dict of torchvision's `name` (random weights), as
    `torch.save(model.state_dict())` writes a downloaded one."""
    torch.manual_seed(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(models.get_model(name, weights=None).state_dict(), path)
    return path
