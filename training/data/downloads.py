"""Downloads that verify a sha256 before the file appears, with a progress bar."""

import gzip
import hashlib
import http.client
import logging
import os
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zlib
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from tqdm import tqdm

from training.data.dataset import DataError

log = logging.getLogger(__name__)

OFFLINE_HINT = (
    "Are you offline? Install Debian's dataset-fashion-mnist, "
    "set DATA_URL to a reachable mirror, or use --data-dir"
)
CHUNK = 1 << 20


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
