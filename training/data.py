"""Data sets for training: Fashion-MNIST (IDX files) and image folders (train/val[/test]).

`load_dataset` picks the source: an image folder (`data_dir`), an archive of one
(`data_url` ending in .zip, .tar, .tar.gz or .tgz), or Fashion-MNIST by default,
read from Debian's `dataset-fashion-mnist` files or downloaded from `DATA_URL`.
Every split holds uint8 images of shape (N, C, H, W) in canonical form.
"""

import gzip
import hashlib
import http.client
import logging
import os
import shutil
import struct
import sys
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

import numpy as np
import torch
from tqdm import tqdm

from sieve.config import Settings, get_settings
from training.preprocess import (
    FASHION_MNIST,
    ImageError,
    Preprocessing,
    folder_preprocessing,
    load_image,
    to_canonical,
)

log = logging.getLogger(__name__)

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
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip")
OFFLINE_HINT = (
    "Are you offline? Install Debian's dataset-fashion-mnist, "
    "set DATA_URL to a reachable mirror, or use --data-dir"
)
CHUNK = 1 << 20
IDX_UBYTE = 0x08


class DataError(RuntimeError):
    """A data problem the user can fix; the message says what is wrong and how to fix it."""


@dataclass
class Split:
    """Images (uint8, N x C x H x W, canonical form) and their labels (int64, N)."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        """Number of examples."""
        return len(self.labels)


@dataclass
class DataSet:
    """A data set ready for training: three splits, class names and provenance."""

    name: str
    classes: list[str]
    train: Split
    val: Split
    test: Split
    preprocessing: Preprocessing
    checksum: str
    source: str
    skipped: int = 0


def load_dataset(
    data_dir: str | os.PathLike | None = None,
    data_url: str | None = None,
    download: bool = False,
    val_size: int = 5000,
    seed: int = 0,
    image_size: int = 64,
    settings: Settings | None = None,
) -> DataSet:
    """Load the data set the arguments and settings name; Fashion-MNIST by default.

    `val_size` and `seed` apply to Fashion-MNIST only; `image_size` to image folders only.
    """
    settings = settings or get_settings()
    if data_dir is not None:
        folder = Path(data_dir)
        if _has_fashion_files(folder):
            return load_fashion_mnist(folder, val_size=val_size, seed=seed)
        return load_image_folder(folder, image_size=image_size)
    url = data_url or settings.data_url
    if archive_stem(url) is not None:
        return load_archive(url, settings, download=download, image_size=image_size)
    return load_fashion_mnist(
        settings=settings, url=url, download=download, val_size=val_size, seed=seed
    )


# --- Fashion-MNIST ------------------------------------------------------------


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


def _has_fashion_files(folder: Path) -> bool:
    """True when `folder` holds the four Fashion-MNIST .gz files."""
    return all((folder / f"{name}.gz").is_file() for name in FASHION_SHA256)


def _fashion_folder(
    settings: Settings, url: str, allow_download: bool, checksums: Mapping[str, str] | None
) -> Path:
    """Return the folder with the four files: the system copy, the cache, or a download."""
    cache = settings.data_dir / "fashion-mnist"
    for folder in (settings.fashion_mnist_dir, cache):
        if _has_fashion_files(folder):
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


# --- Downloads ----------------------------------------------------------------


def download(
    url: str,
    dest: Path,
    sha256: str | None = None,
    *,
    decompressed: bool = False,
    timeout: float = 60.0,
    progress: bool | None = None,
) -> Path:
    """Download `url` to `dest` atomically, verifying its sha256 first; return `dest`.

    With `decompressed`, `sha256` is that of the gunzipped content. `progress` None
    shows a bar only when stderr is a terminal. No partial file is ever left behind.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            _fetch(url, out, timeout, progress)
        if sha256 is not None:
            _verify(tmp, sha256, decompressed, url)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    log.info("downloaded %s to %s", url, dest)
    return dest


def _fetch(url: str, out: BinaryIO, timeout: float, progress: bool | None) -> None:
    """Stream `url` into `out` with a progress bar; network failures become DataError."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            total = int(response.headers.get("Content-Length") or 0) or None
            received = _copy_with_progress(response, out, total, url, progress)
    except urllib.error.HTTPError as exc:
        raise DataError(f"could not download {url}: HTTP {exc.code} {exc.reason}") from exc
    except urllib.error.URLError as exc:
        raise DataError(f"could not download {url}: {exc.reason}. {OFFLINE_HINT}") from exc
    except (OSError, http.client.HTTPException) as exc:  # timeouts, resets, bad responses
        raise DataError(f"could not download {url}: {exc}. {OFFLINE_HINT}") from exc
    if total is not None and received != total:
        raise DataError(
            f"could not download {url}: the connection closed after {received} of "
            f"{total} bytes. {OFFLINE_HINT}"
        )


def _copy_with_progress(
    response: BinaryIO, out: BinaryIO, total: int | None, url: str, progress: bool | None
) -> int:
    """Copy the response body to `out`, updating a tqdm bar; return the byte count."""
    name = PurePosixPath(urllib.parse.urlsplit(url).path).name or url
    disable = None if progress is None else not progress
    received = 0
    bar = tqdm(
        total=total,
        desc=name,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        file=sys.stderr,
        disable=disable,
        leave=False,
    )
    with bar:
        while chunk := response.read(CHUNK):
            out.write(chunk)
            received += len(chunk)
            bar.update(len(chunk))
    return received


def _verify(path: Path, sha256: str, decompressed: bool, url: str) -> None:
    """Raise DataError unless the file (or its gunzipped content) has this sha256."""
    digest = hashlib.sha256()
    opener = gzip.open if decompressed else open
    try:
        with opener(path, "rb") as stream:
            while chunk := stream.read(CHUNK):
                digest.update(chunk)
    except (OSError, EOFError, zlib.error) as exc:  # not gzip, or truncated
        raise DataError(f"{url} is not a valid gzip file ({exc}); try another mirror") from exc
    if digest.hexdigest() != sha256:
        raise DataError(
            f"{url} failed verification (sha256 {digest.hexdigest()}, expected {sha256}); "
            "the download was discarded. The mirror may be damaged: try another DATA_URL"
        )


# --- Archives -----------------------------------------------------------------


def archive_stem(url: str) -> str | None:
    """The archive's name without its suffix, or None when `url` is not an archive."""
    name = PurePosixPath(urllib.parse.urlsplit(url).path).name
    for suffix in ARCHIVE_SUFFIXES:
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return None


def load_archive(
    url: str, settings: Settings, download: bool = False, image_size: int = 64
) -> DataSet:
    """Fetch an image-folder archive into the data dir, extract it once and load it."""
    stem = archive_stem(url)
    if stem is None:
        raise DataError(f"{url} is not a .zip, .tar, .tar.gz or .tgz archive")
    target = settings.data_dir / stem
    if not target.is_dir():
        archive = _fetch_archive(url, settings.data_dir / "archives", download)
        extract_archive(archive, target)
    dataset = load_image_folder(target, image_size=image_size)
    dataset.source = url
    return dataset


def _fetch_archive(url: str, folder: Path, allow_download: bool) -> Path:
    """Return the local copy of the archive at `url`, downloading it when allowed."""
    path = folder / PurePosixPath(urllib.parse.urlsplit(url).path).name
    if path.is_file():
        return path
    if not allow_download:
        raise DataError(f"{path} is not there yet; pass --download-data to fetch it from {url}")
    return download(url, path)


def extract_archive(archive: Path, target: Path) -> Path:
    """Extract a zip or tar archive into `target` safely and atomically; return `target`."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        if zipfile.is_zipfile(archive):
            _extract_zip(archive, tmp)
        else:
            _extract_tar(archive, tmp)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _check_member(name: str, archive: Path) -> None:
    """Refuse absolute paths and `..` in archive member names (path traversal)."""
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts or (path.parts and ":" in path.parts[0]):
        raise DataError(
            f"{archive.name} contains the unsafe member {name!r} (absolute or with '..'); "
            "refusing to extract it. Use an archive whose paths stay inside it"
        )


def _extract_zip(archive: Path, dest: Path) -> None:
    """Check every member name, then extract the zip."""
    try:
        with zipfile.ZipFile(archive) as zf:
            for name in zf.namelist():
                _check_member(name, archive)
            zf.extractall(dest)
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise DataError(f"{archive} is not a readable zip ({exc}); delete it and retry") from exc


def _extract_tar(archive: Path, dest: Path) -> None:
    """Check every member name, then extract the regular files and folders of the tar."""
    try:
        with tarfile.open(archive) as tf:
            members = tf.getmembers()
            for member in members:
                _check_member(member.name, archive)
            wanted = [m for m in members if m.isfile() or m.isdir()]
            tf.extractall(dest, members=wanted, filter="data")
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise DataError(
            f"{archive} is not a readable .zip or .tar(.gz) archive ({exc}); delete it and retry"
        ) from exc


# --- Image folders ------------------------------------------------------------


def load_image_folder(folder: str | os.PathLike, image_size: int = 64) -> DataSet:
    """Load `train/<class>/*`, `val/<class>/*` and optional `test/<class>/*` under `folder`."""
    root = find_split_root(Path(folder))
    classes = _classes(root / "train", root)
    prep = folder_preprocessing(image_size)
    records: dict[str, str] = {}
    splits, skipped = {}, 0
    for name in ("train", "val", "test"):
        if name == "test" and not (root / "test").is_dir():
            splits["test"] = splits["val"]
            continue
        found = _classes(root / name, root)
        if found != classes:
            raise DataError(_class_mismatch(root / name, classes, found))
        splits[name], n_skipped = _load_split(root, name, classes, prep, records)
        skipped += n_skipped
    if skipped:
        log.warning("skipped %d unreadable file(s) under %s (debug log lists them)", skipped, root)
    return DataSet(
        name=root.name,
        classes=classes,
        train=splits["train"],
        val=splits["val"],
        test=splits["test"],
        preprocessing=prep,
        checksum=_records_checksum(records),
        source=str(root),
        skipped=skipped,
    )


def find_split_root(folder: Path) -> Path:
    """Return `folder`, or its one sub-folder, that contains `train/`."""
    if not folder.is_dir():
        raise DataError(f"data folder {folder} does not exist")
    if (folder / "train").is_dir():
        return folder
    nested = [p for p in _visible(folder) if p.is_dir() and (p / "train").is_dir()]
    if len(nested) == 1:
        return nested[0]
    found = ", ".join(p.name for p in nested) or "none"
    raise DataError(
        f"{folder} has no train/ folder (sub-folders with one: {found}); an image-folder "
        "data set needs train/<class>/ and val/<class>/, optionally test/<class>/"
    )


def _visible(folder: Path) -> list[Path]:
    """Sorted entries of `folder` whose names do not start with '.'."""
    return sorted(p for p in folder.iterdir() if not p.name.startswith("."))


def _classes(split_dir: Path, root: Path) -> list[str]:
    """Sorted class folder names of one split; DataError when the split is missing or empty."""
    if not split_dir.is_dir():
        raise DataError(
            f"{root} has no {split_dir.name}/ folder; an image-folder data set needs "
            "train/<class>/ and val/<class>/ (test/<class>/ is optional)"
        )
    classes = [p.name for p in _visible(split_dir) if p.is_dir()]
    if not classes:
        raise DataError(f"{split_dir} has no class folders; put images in {split_dir}/<class>/")
    return classes


def _class_mismatch(split_dir: Path, classes: list[str], found: list[str]) -> str:
    """Message naming the classes a split lacks or adds compared with train/."""
    missing = sorted(set(classes) - set(found))
    extra = sorted(set(found) - set(classes))
    return (
        f"{split_dir} has different classes than train/: missing {missing}, extra {extra}; "
        "every split needs the same class folders"
    )


def _files(folder: Path) -> list[Path]:
    """All non-hidden files below `folder`, sorted."""
    return sorted(
        p
        for p in folder.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


def _load_split(
    root: Path, split: str, classes: list[str], prep: Preprocessing, records: dict[str, str]
) -> tuple[Split, int]:
    """Decode one split's images to canonical form; return it and the skipped count."""
    images, labels, skipped = [], [], 0
    for label, name in enumerate(classes):
        class_dir = root / split / name
        files = _files(class_dir)
        if not files:
            raise DataError(f"class {name!r} in {split}/ is empty: {class_dir} has no files")
        count = 0
        for path in files:
            array = _read_image(path, prep, records, root)
            if array is None:
                skipped += 1
                continue
            images.append(array)
            labels.append(label)
            count += 1
        if not count:
            raise DataError(f"class {name!r} in {split}/ has no readable images ({class_dir})")
    split_data = Split(torch.from_numpy(np.stack(images)), torch.tensor(labels, dtype=torch.int64))
    return split_data, skipped


def _read_image(
    path: Path, prep: Preprocessing, records: dict[str, str], root: Path
) -> np.ndarray | None:
    """Decode one file to canonical form and record its hash; None when unreadable."""
    try:
        data = path.read_bytes()
        array = to_canonical(load_image(data), prep)
    except (ImageError, OSError) as exc:  # not an image, damaged, or unreadable file
        log.debug("skipping %s: %s", path, exc)
        return None
    records[path.relative_to(root).as_posix()] = hashlib.sha256(data).hexdigest()
    return array


def _records_checksum(records: dict[str, str]) -> str:
    """sha256 over sorted (relative path, file sha256) pairs."""
    digest = hashlib.sha256()
    for rel, file_hash in sorted(records.items()):
        digest.update(f"{rel}\0{file_hash}\n".encode())
    return digest.hexdigest()
