"""The model store: published model versions and the aliases that point at them.

A store holds, per model name, numbered versions `v1`, `v2`, ... Each version is a set of
artifact files (weights, model card, plots) plus `MANIFEST.json`, which lists every file
with its sha256 and is written last: a reader sees either a complete version or none, and
files are verified against the manifest when a version is opened. Next to the versions,
`ALIASES.json` names versions (`production`, `staging`, ...) and keeps their history; see
`sieve/registry.py`.

Two backends share this interface (`sieve.store.base.Store`): a local folder
(`sieve.store.local.ModelStore`, the default) and S3 (`sieve.store.s3.S3Store`, for
`MODEL_STORE_URL=s3://bucket/prefix`).

    python -m sieve.store list            # every model and its versions
    python -m sieve.store has classifier  # exit 0 when a version exists
"""

from sieve.config import get_settings
from sieve.modelchanges import Announcer
from sieve.store.base import (
    ALIASES,
    CARD,
    MANIFEST,
    NAME_PATTERN,
    PRODUCTION,
    VERSION_PATTERN,
    Store,
    StoreError,
    check_name,
    sha256_file,
    version_number,
)
from sieve.store.local import ModelStore

__all__ = ["ALIASES", "CARD", "MANIFEST", "NAME_PATTERN", "PRODUCTION", "VERSION_PATTERN",
           "ModelStore", "Store", "StoreError", "check_name", "open_store", "sha256_file",
           "version_number"]


def open_store(url: str | None = None, redis_url: str | None = None) -> Store:
    """The store at `url` or MODEL_STORE_URL: a local folder (or file:// URL), or s3://.

    Its changes of the served versions are announced on `redis_url` (default: REDIS_URL,
    else the local Redis the workers use by default)."""
    settings = get_settings()
    url = url or settings.model_store_url
    if url.startswith("s3://"):
        from sieve.store.s3 import S3Store  # boto3 only where S3 is used

        store = S3Store.from_url(url, settings.model_cache_dir, settings.aws_endpoint_url)
    else:
        url = url.removeprefix("file://")
        if "://" in url:
            raise StoreError(
                f"MODEL_STORE_URL={url}: use a local folder, a file:// URL or s3://bucket/prefix"
            )
        store = ModelStore(url)
    store.announcer = Announcer(redis_url or settings.redis_url)
    return store
