"""Tests for training.data: image folders, archives, downloads and Fashion-MNIST."""

import functools
import gzip
import hashlib
import http.server
import io
import logging
import shutil
import socket
import struct
import tarfile
import threading
import zipfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from sieve.config import FASHION_MNIST_URL, Settings
from training.data import (
    CLASSES_FASHION,
    FASHION_SHA256,
    DataError,
    download,
    extract_archive,
    load_dataset,
    load_fashion_mnist,
    parse_idx,
)

DEBIAN = Path("/usr/share/datasets/fashion-mnist")
needs_debian = pytest.mark.skipif(
    not (DEBIAN / "train-images-idx3-ubyte.gz").is_file(),
    reason="Debian's dataset-fashion-mnist is not installed",
)
TIMEOUT = 5


# --- fixtures and helpers -----------------------------------------------------


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch):
    """Keep urllib from sending loopback requests through a proxy."""
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def settings(tmp_path):
    """Settings on temporary folders, with no system copy of Fashion-MNIST."""
    return Settings(
        data_dir=tmp_path / "data",
        data_url=FASHION_MNIST_URL,
        fashion_mnist_dir=tmp_path / "no-system-copy",
        model_store_url=str(tmp_path / "models"),
    )


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    """Static file handler that does not log every request to stderr."""

    def log_message(self, *args):
        """Drop the access log."""


@pytest.fixture
def server(tmp_path):
    """A static HTTP server on 127.0.0.1 serving `root`; yields root and base URL."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(QuietHandler, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield SimpleNamespace(root=root, url=f"http://127.0.0.1:{httpd.server_port}/")
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=TIMEOUT)


def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_image(path: Path, mode: str, size: tuple[int, int]) -> None:
    """Write a random image of `mode` and `size`; the format follows the suffix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    channels = {"L": (), "RGB": (3,), "RGBA": (4,)}[mode]
    pixels = np.random.default_rng(len(path.name)).integers(0, 256, (size[1], size[0], *channels))
    Image.fromarray(pixels.astype(np.uint8), mode).save(path)


def make_folder(root: Path, splits=("train", "val"), classes=("ants", "bees")) -> Path:
    """An image-folder data set: three images per class in RGB, L and RGBA, sizes vary."""
    for split in splits:
        for name in classes:
            write_image(root / split / name / "a.png", "RGB", (40, 30))
            write_image(root / split / name / "b.jpg", "L", (70, 50))
            write_image(root / split / name / "c.png", "RGBA", (64, 64))
    return root


def idx_bytes(array: np.ndarray) -> bytes:
    """Encode a uint8 array as an IDX file."""
    header = bytes([0, 0, 8, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_fashion(folder: Path, n_train: int = 30, n_test: int = 10) -> dict[str, str]:
    """Write small valid Fashion-MNIST-shaped IDX gz files; return their content sha256s."""
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28)),
        "train-labels-idx1-ubyte": np.arange(n_train) % 10,
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28)),
        "t10k-labels-idx1-ubyte": np.arange(n_test) % 10,
    }
    folder.mkdir(parents=True, exist_ok=True)
    checksums = {}
    for name, array in arrays.items():
        raw = idx_bytes(array)
        checksums[name] = hashlib.sha256(raw).hexdigest()
        (folder / f"{name}.gz").write_bytes(gzip.compress(raw))
    return checksums


# --- image folders ------------------------------------------------------------


def test_image_folder_shapes_labels_and_classes(tmp_path, settings):
    folder = make_folder(tmp_path / "insects")
    (folder / "train" / "ants" / ".DS_Store").write_bytes(b"hidden")
    ds = load_dataset(data_dir=folder, image_size=32, settings=settings)
    assert ds.name == "insects"
    assert ds.classes == ["ants", "bees"]
    assert ds.train.images.shape == (6, 3, 32, 32)
    assert ds.train.images.dtype == torch.uint8
    assert ds.train.labels.dtype == torch.int64
    assert ds.train.labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert ds.test is ds.val
    assert ds.skipped == 0
    assert ds.preprocessing.mode == "RGB" and ds.preprocessing.size == 32
    assert len(ds.checksum) == 64


def test_checksum_follows_content(tmp_path, settings):
    folder = make_folder(tmp_path / "insects")
    first = load_dataset(data_dir=folder, image_size=16, settings=settings).checksum
    assert load_dataset(data_dir=folder, image_size=16, settings=settings).checksum == first
    write_image(folder / "val" / "bees" / "a.png", "RGB", (41, 30))
    assert load_dataset(data_dir=folder, image_size=16, settings=settings).checksum != first


def test_nested_root_and_test_split(tmp_path, settings):
    make_folder(tmp_path / "download" / "hymenoptera_data", splits=("train", "val", "test"))
    ds = load_dataset(data_dir=tmp_path / "download", image_size=16, settings=settings)
    assert ds.name == "hymenoptera_data"
    assert ds.test is not ds.val
    assert ds.test.images.shape == (6, 3, 16, 16)


def test_unreadable_files_are_skipped_and_counted(tmp_path, settings, caplog):
    folder = make_folder(tmp_path / "insects")
    good = tmp_path / "good.jpg"
    write_image(good, "RGB", (64, 64))
    bees = folder / "train" / "bees"
    (bees / "truncated.jpg").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    (bees / "notes.png").write_text("not an image")
    (bees / "empty.jpg").write_bytes(b"")
    caplog.set_level(logging.DEBUG, logger="training.data")
    ds = load_dataset(data_dir=folder, image_size=16, settings=settings)
    assert ds.skipped == 3
    assert len(ds.train) == 6
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "skipped 3" in warnings[0]
    assert sum("truncated.jpg" in r.getMessage() for r in caplog.records) == 1


def _empty_class(folder):
    (folder / "val" / "wasps").mkdir()
    (folder / "train" / "wasps").mkdir()


def _missing_val(folder):
    shutil.rmtree(folder / "val")


def _mismatched(folder):
    (folder / "val" / "bees").rename(folder / "val" / "wasps")


def _only_broken(folder):
    for path in (folder / "val" / "bees").iterdir():
        path.write_bytes(b"broken")


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (_empty_class, r"class 'wasps' in train/ is empty"),
        (_missing_val, r"has no val/ folder"),
        (_mismatched, r"missing \['bees'\], extra \['wasps'\]"),
        (_only_broken, r"class 'bees' in val/ has no readable images"),
    ],
)
def test_folder_problems_are_named(tmp_path, settings, damage, message):
    folder = make_folder(tmp_path / "insects")
    damage(folder)
    with pytest.raises(DataError, match=message):
        load_dataset(data_dir=folder, image_size=16, settings=settings)


def test_folder_without_train_is_refused(tmp_path, settings):
    (tmp_path / "nothing").mkdir()
    with pytest.raises(DataError, match="has no train/ folder"):
        load_dataset(data_dir=tmp_path / "nothing", settings=settings)


# --- archives -----------------------------------------------------------------


@pytest.mark.parametrize(("fmt", "suffix"), [("zip", ".zip"), ("gztar", ".tar.gz")])
def test_archive_over_http(tmp_path, settings, server, fmt, suffix):
    make_folder(tmp_path / "src" / "hymenoptera_data")
    shutil.make_archive(str(server.root / "hymenoptera"), fmt, tmp_path / "src")
    url = f"{server.url}hymenoptera{suffix}"
    ds = load_dataset(data_url=url, download=True, image_size=16, settings=settings)
    assert ds.name == "hymenoptera_data"
    assert ds.source == url
    assert ds.classes == ["ants", "bees"]
    assert ds.train.images.shape == (6, 3, 16, 16)
    assert (settings.data_dir / "archives" / f"hymenoptera{suffix}").is_file()
    assert (settings.data_dir / "hymenoptera" / "hymenoptera_data" / "train").is_dir()


def test_archive_needs_download_flag(settings):
    with pytest.raises(DataError, match="--download-data"):
        load_dataset(data_url="http://127.0.0.1:9/set.zip", settings=settings)


def _evil_tar(path: Path, name: str) -> None:
    with tarfile.open(path, "w:gz") as tf:
        info = tarfile.TarInfo(name)
        info.size = 1
        tf.addfile(info, io.BytesIO(b"x"))


def _evil_zip(path: Path, name: str) -> None:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(name, b"x")


@pytest.mark.parametrize("make", [_evil_tar, _evil_zip])
@pytest.mark.parametrize("member", ["../evil", "data/../../evil", "/tmp/evil"])
def test_archive_path_traversal_is_refused(tmp_path, make, member):
    archive = tmp_path / "evil.archive"
    make(archive, member)
    target = tmp_path / "out" / "evil"
    with pytest.raises(DataError, match="unsafe member"):
        extract_archive(archive, target)
    assert not target.exists()
    assert not (tmp_path / "evil").exists()
    assert list((tmp_path / "out").iterdir()) == []


# --- downloads ----------------------------------------------------------------


def test_download_verifies_and_renames_atomically(tmp_path, server, capsys):
    checksums = write_fashion(server.root)
    dest = tmp_path / "dl" / "labels.gz"
    sha = checksums["t10k-labels-idx1-ubyte"]
    url = f"{server.url}t10k-labels-idx1-ubyte.gz"
    assert download(url, dest, sha, decompressed=True, timeout=TIMEOUT, progress=True) == dest
    assert dest.read_bytes() == (server.root / "t10k-labels-idx1-ubyte.gz").read_bytes()
    assert list(dest.parent.iterdir()) == [dest]
    assert "labels" in capsys.readouterr().err


def test_download_raw_checksum(tmp_path, server):
    (server.root / "blob.bin").write_bytes(b"sieve" * 100)
    sha = hashlib.sha256(b"sieve" * 100).hexdigest()
    dest = download(f"{server.url}blob.bin", tmp_path / "blob.bin", sha, timeout=TIMEOUT)
    assert dest.read_bytes() == b"sieve" * 100


@pytest.mark.parametrize("decompressed", [True, False])
def test_download_checksum_mismatch_leaves_nothing(tmp_path, server, decompressed):
    write_fashion(server.root)
    dest = tmp_path / "dl" / "labels.gz"
    with pytest.raises(DataError, match="failed verification"):
        download(
            f"{server.url}t10k-labels-idx1-ubyte.gz",
            dest,
            "0" * 64,
            decompressed=decompressed,
            timeout=TIMEOUT,
        )
    assert list(dest.parent.iterdir()) == []


def test_download_unreachable_host(tmp_path):
    url = f"http://127.0.0.1:{closed_port()}/file.gz"
    with pytest.raises(DataError, match=r"could not download .*Are you offline\?"):
        download(url, tmp_path / "file.gz", timeout=TIMEOUT)
    assert list(tmp_path.iterdir()) == []


def test_download_http_error(tmp_path, server):
    dest = tmp_path / "dl" / "missing.gz"
    with pytest.raises(DataError, match="HTTP 404"):
        download(f"{server.url}missing.gz", dest, timeout=TIMEOUT)
    assert list(dest.parent.iterdir()) == []


# --- Fashion-MNIST ------------------------------------------------------------


def test_fashion_mnist_download_then_cache(settings, server):
    checksums = write_fashion(server.root)
    settings = settings.replace(data_url=server.url)
    kwargs = {"settings": settings, "download": True, "val_size": 10, "checksums": checksums}
    ds = load_fashion_mnist(**kwargs)
    assert (len(ds.train), len(ds.val), len(ds.test)) == (20, 10, 10)
    assert ds.train.images.shape == (20, 1, 28, 28) and ds.train.images.dtype == torch.uint8
    assert ds.classes == CLASSES_FASHION
    assert ds.source == str(settings.data_dir / "fashion-mnist")
    all_labels = sorted(ds.train.labels.tolist() + ds.val.labels.tolist())
    assert all_labels == sorted(np.arange(30) % 10)
    for path in server.root.iterdir():
        path.unlink()
    assert load_fashion_mnist(**kwargs).checksum == ds.checksum


def test_fashion_mnist_split_is_seeded(tmp_path):
    checksums = write_fashion(tmp_path / "fm")
    load = functools.partial(load_fashion_mnist, tmp_path / "fm", val_size=5, checksums=checksums)
    assert torch.equal(load(seed=1).val.images, load(seed=1).val.images)
    assert not torch.equal(load(seed=1).val.images, load(seed=2).val.images)


def test_fashion_mnist_missing_without_download(settings):
    with pytest.raises(DataError, match=r"--download-data.*dataset-fashion-mnist"):
        load_dataset(settings=settings)


def test_fashion_mnist_wrong_content_is_refused(tmp_path, settings):
    write_fashion(tmp_path / "fm")
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte\.gz has unexpected content"):
        load_dataset(settings=settings.replace(fashion_mnist_dir=tmp_path / "fm"))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\0\0\x08", "not an unsigned-byte IDX file"),
        (b"\0\0\x0d\x01" + struct.pack(">I", 1) + b"\0" * 4, "not an unsigned-byte IDX file"),
        (b"\0\0\x08\x03" + struct.pack(">I", 2), "header is incomplete"),
        (idx_bytes(np.zeros((2, 28, 28)))[:-1], "truncated or damaged"),
    ],
)
def test_parse_idx_rejects_bad_files(data, message):
    with pytest.raises(DataError, match=f"images.idx .*{message}"):
        parse_idx(data, "images.idx")


@needs_debian
def test_fashion_mnist_from_debian(settings):
    ds = load_dataset(settings=settings.replace(fashion_mnist_dir=DEBIAN), val_size=5000)
    assert ds.train.images.shape == (55000, 1, 28, 28)
    assert ds.val.images.shape == (5000, 1, 28, 28)
    assert ds.test.images.shape == (10000, 1, 28, 28)
    assert ds.train.images.dtype == torch.uint8 and ds.test.labels.dtype == torch.int64
    assert ds.classes == CLASSES_FASHION
    assert torch.bincount(ds.test.labels).tolist() == [1000] * 10
    expected = hashlib.sha256("".join(FASHION_SHA256.values()).encode()).hexdigest()
    assert ds.checksum == expected


@needs_debian
def test_fashion_mnist_corrupted_copy(tmp_path, settings):
    copy = tmp_path / "corrupt"
    copy.mkdir()
    for name in FASHION_SHA256:
        (copy / f"{name}.gz").symlink_to(DEBIAN / f"{name}.gz")
    bad = copy / "train-images-idx3-ubyte.gz"
    bad.unlink()
    bad.write_bytes((DEBIAN / "train-images-idx3-ubyte.gz").read_bytes()[:100_000])
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte\.gz is not a readable gzip"):
        load_dataset(settings=settings.replace(fashion_mnist_dir=copy))
