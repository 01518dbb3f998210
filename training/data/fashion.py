"""Fashion-MNIST: find, download and verify the four IDX files and read them into splits."""

import gzip
import hashlib
import struct
import zlib
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from sieve.config import Settings, get_settings
from training.data.dataset import DataError, DataSet, Split
from training.data.downloads import download
from training.preprocess import FASHION_MNIST

CLASSES_FASHION = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]
# sha256 of the *decompressed* IDX files, so that a mirror that recompresses still
# verifies. The order is the one DataSet.checksum is computed in.
FASHION_SHA256 = {
    "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}
IDX_UBYTE = 0x08


def load_fashion_mnist(
    directory: Path | None = None,
    *,
    settings: Settings | None = None,
    url: str | None = None,
    download: bool = False,
    val_size: int = 5000,
    seed: int = 0,
    checksums: Mapping[str, str] | None = FASHION_SHA256,
) -> DataSet:
    """Load Fashion-MNIST from `directory`, or find (and maybe download) it via settings.

    `checksums` maps each file's name (without .gz) to the sha256 of its decompressed
    content; None skips verification.
    """
    if directory is None:
        settings = settings or get_settings()
        directory = _fashion_folder(settings, url or settings.data_url, download, checksums)
    arrays, hashes = {}, []
    for name in FASHION_SHA256:
        expected = checksums.get(name) if checksums is not None else None
        arrays[name], digest = read_idx_gz(directory / f"{name}.gz", expected)
        hashes.append(digest)
    train = _check_pair(arrays["train-images-idx3-ubyte"], arrays["train-labels-idx1-ubyte"])
    test = _check_pair(arrays["t10k-images-idx3-ubyte"], arrays["t10k-labels-idx1-ubyte"])
    train_idx, val_idx = _val_indices(len(train[1]), val_size, seed)
    return DataSet(
        name="fashion-mnist",
        classes=list(CLASSES_FASHION),
        train=_split(*train, train_idx),
        val=_split(*train, val_idx),
        test=_split(*test, np.arange(len(test[1]))),
        preprocessing=FASHION_MNIST,
        checksum=hashlib.sha256("".join(hashes).encode()).hexdigest(),
        source=str(directory),
    )


def has_fashion_files(folder: Path) -> bool:
    """True when `folder` holds the four Fashion-MNIST .gz files."""
    return all((folder / f"{name}.gz").is_file() for name in FASHION_SHA256)


def _fashion_folder(
    settings: Settings, url: str, allow_download: bool, checksums: Mapping[str, str] | None
) -> Path:
    """Return the folder with the four files: the system copy, the cache, or a download."""
    cache = settings.data_dir / "fashion-mnist"
    for folder in (settings.fashion_mnist_dir, cache):
        if has_fashion_files(folder):
            return folder
    if not allow_download:
        raise DataError(
            f"Fashion-MNIST was not found in {settings.fashion_mnist_dir} or {cache}. "
            f"Pass --download-data to fetch it from {url}, or install Debian's "
            "dataset-fashion-mnist (apt install dataset-fashion-mnist)."
        )
    for name in FASHION_SHA256:
        target = cache / f"{name}.gz"
        if not target.is_file():
            expected = checksums.get(name) if checksums is not None else None
            download(f"{url.rstrip('/')}/{name}.gz", target, expected, decompressed=True)
    return cache


def read_idx_gz(path: Path, sha256: str | None = None) -> tuple[np.ndarray, str]:
    """Read a gzipped IDX file; return its array and the sha256 of its decompressed bytes."""
    try:
        data = gzip.decompress(path.read_bytes())
    except FileNotFoundError as exc:
        raise DataError(f"{path} is missing; rerun with --download-data") from exc
    except (OSError, EOFError, zlib.error) as exc:  # BadGzipFile is an OSError
        raise DataError(
            f"{path} is not a readable gzip file ({exc}); delete it and rerun with "
            "--download-data, or reinstall dataset-fashion-mnist"
        ) from exc
    digest = hashlib.sha256(data).hexdigest()
    if sha256 is not None and digest != sha256:
        raise DataError(
            f"{path} has unexpected content (sha256 {digest}, expected {sha256}); "
            "delete it and rerun with --download-data, or reinstall dataset-fashion-mnist"
        )
    return parse_idx(data, path.name), digest


def parse_idx(data: bytes, name: str) -> np.ndarray:
    """Parse the bytes of an unsigned-byte IDX file into an array; `name` is for errors."""
    if len(data) < 4 or data[:2] != b"\0\0" or data[2] != IDX_UBYTE or data[3] == 0:
        raise DataError(
            f"{name} is not an unsigned-byte IDX file (magic {data[:4].hex() or 'missing'})"
        )
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{name} is truncated: its header is incomplete")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    expected = header + int(np.prod(shape))
    if len(data) != expected:
        raise DataError(
            f"{name} has {len(data)} bytes but its header {shape} needs {expected}: "
            "the file is truncated or damaged"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def _check_pair(images: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Check that images and labels fit together and Fashion-MNIST; return them."""
    size = FASHION_MNIST.size
    if images.ndim != 3 or images.shape[1:] != (size, size) or labels.ndim != 1:
        raise DataError(
            f"expected {size}x{size} images and a label vector, got image shape "
            f"{images.shape} and label shape {labels.shape}: these are not Fashion-MNIST files"
        )
    if len(images) != len(labels):
        raise DataError(f"{len(images)} images but {len(labels)} labels in Fashion-MNIST files")
    if labels.size and labels.max() >= len(CLASSES_FASHION):
        raise DataError(f"label {labels.max()} is out of range for {len(CLASSES_FASHION)} classes")
    return images, labels


def _val_indices(n: int, val_size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split range(n) into (train, val) indices with a seeded permutation."""
    if not 0 <= val_size < n:
        raise DataError(f"val_size must be between 0 and {n - 1}, got {val_size}")
    order = np.random.default_rng(seed).permutation(n)
    return order[val_size:], order[:val_size]


def _split(images: np.ndarray, labels: np.ndarray, idx: np.ndarray) -> Split:
    """Select `idx` (a copy) as an (N, 1, H, W) uint8 split with int64 labels."""
    return Split(
        images=torch.from_numpy(images[idx][:, None]),
        labels=torch.from_numpy(labels[idx].astype(np.int64)),
    )
