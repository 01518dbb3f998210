"""Image-folder data sets in .zip or .tar(.gz) archives: fetched once, extracted safely."""

import os
import shutil
import tarfile
import tempfile
import urllib.parse
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from training.config import Settings
from training.data.dataset import DataError, DataSet
from training.data.downloads import download
from training.data.folders import load_image_folder

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip")


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
