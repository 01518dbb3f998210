"""The model store on S3 (or an S3-compatible server such as MinIO), through boto3.

`MODEL_STORE_URL=s3://bucket/prefix`; `AWS_ENDPOINT_URL` points boto3 at another server;
credentials and region come from boto3's usual places (environment, ~/.aws, instance
role). The layout under the prefix is the local store's:

    <name>/v3/model.pt, card.json, ...   the artifact files
    <name>/v3/MANIFEST.json              written last: a version exists once it is there
    <name>/v3/.claim                     reserves the number v3 for one publisher
    <name>/ALIASES.json                  aliases and their history

A publisher claims the next number with a conditional write (`If-None-Match: *`), so two
publishers never share one, uploads the files, then the manifest. A publisher that dies
half-way leaves a number without a manifest: invisible to readers, skipped by the next
publisher. Workers open a version by downloading it once into a local cache folder
(SIEVE_MODEL_CACHE_DIR), verifying every file against the manifest before the folder is
renamed into place. ALIASES.json is replaced with a conditional write on its ETag
(`If-Match`), so two promotions at once retry instead of losing one.
"""

import hashlib
import json
import re
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import boto3
import boto3.exceptions
import botocore.exceptions
from botocore.config import Config

from sieve.store.base import (
    ALIASES,
    MANIFEST,
    VERSION_PATTERN,
    Store,
    StoreError,
    check_name,
    empty_aliases,
    never_trained,
    stage,
    verify,
    version_number,
)

CLAIM = ".claim"
MISSING = {"NoSuchKey", "404", "NotFound"}
CONFLICT = {"PreconditionFailed", "412", "ConditionalRequestConflict", "409"}


def _code(exc: botocore.exceptions.ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


class S3Store(Store):
    """Published model versions under s3://bucket/prefix, cached locally when opened."""

    def __init__(self, bucket: str, prefix: str, cache_dir: Path,
                 endpoint_url: str | None = None, client=None):
        self.bucket = bucket
        self.prefix = f"{prefix.strip('/')}/" if prefix.strip("/") else ""
        self.url = f"s3://{bucket}/{self.prefix}"
        self.cache = Path(cache_dir) / bucket / self.prefix
        config = Config(connect_timeout=5, read_timeout=30,
                        retries={"max_attempts": 4, "mode": "standard"},
                        s3={"addressing_style": "path"} if endpoint_url else None)
        self.client = client or boto3.client("s3", endpoint_url=endpoint_url, config=config)

    @classmethod
    def from_url(cls, url: str, cache_dir: Path, endpoint_url: str | None = None) -> "S3Store":
        """A store for `s3://bucket/prefix`."""
        match = re.fullmatch(r"s3://([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(/.*)?", url)
        if not match:
            raise StoreError(f"MODEL_STORE_URL={url}: expected s3://bucket/prefix")
        return cls(match[1], match[2] or "", cache_dir, endpoint_url)

    @contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        """S3 and network failures as StoreError, naming the store and what was tried."""
        try:
            yield
        except botocore.exceptions.ClientError as exc:
            if _code(exc) == "NoSuchBucket":
                raise StoreError(f"the bucket {self.bucket} does not exist: create it, or "
                                 "correct MODEL_STORE_URL") from exc
            raise StoreError(f"{what} in {self.url} failed: {exc}") from exc
        except botocore.exceptions.BotoCoreError as exc:
            # No credentials, endpoint unreachable, timeouts after the retries.
            raise StoreError(f"cannot reach the model store {self.url} ({what}): {exc}") from exc
        except boto3.exceptions.S3UploadFailedError as exc:
            # upload_file's wrapping of an S3 error answer (access denied, no such bucket).
            raise StoreError(f"{what} in {self.url} failed: {exc}") from exc

    def _key(self, *parts: str) -> str:
        return self.prefix + "/".join(parts)

    def _keys(self, prefix: str) -> Iterator[str]:
        """Every key under a prefix (relative to it)."""
        pages = self.client.get_paginator("list_objects_v2")
        for page in pages.paginate(Bucket=self.bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                yield item["Key"][len(prefix):]

    def _get(self, key: str) -> tuple[bytes, str] | None:
        """An object's bytes and ETag, or None when there is no such key."""
        try:
            answer = self.client.get_object(Bucket=self.bucket, Key=key)
        except botocore.exceptions.ClientError as exc:
            if _code(exc) in MISSING:
                return None
            raise
        return answer["Body"].read(), answer["ETag"]

    def models(self) -> list[str]:
        """Names of the models with at least one version."""
        with self._errors("listing models"):
            pages = self.client.get_paginator("list_objects_v2")
            names = [p["Prefix"][len(self.prefix):].rstrip("/")
                     for page in pages.paginate(Bucket=self.bucket, Prefix=self.prefix,
                                                Delimiter="/")
                     for p in page.get("CommonPrefixes", [])]
        return sorted(n for n in names if re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,63}", n)
                      and self.versions(n))

    def _numbers(self, name: str) -> tuple[list[str], int]:
        """Published versions (oldest first) and the highest number claimed so far."""
        published, highest = [], 0
        with self._errors(f"listing the versions of {name}"):
            for key in self._keys(self._key(check_name(name), "")):
                version, _, filename = key.partition("/")
                if not VERSION_PATTERN.match(version):
                    continue
                highest = max(highest, version_number(version))
                if filename == MANIFEST:
                    published.append(version)
        return sorted(published, key=version_number), highest

    def versions(self, name: str) -> list[str]:
        """Published versions of a model (those with a manifest), oldest first."""
        return self._numbers(name)[0]

    def publish(self, name: str, files: dict[str, Path], card: dict) -> str:
        """Upload artifact files and the card as the next version, the manifest last."""
        with tempfile.TemporaryDirectory(prefix="sieve-publish-") as folder:
            manifest = stage(Path(folder), name, files, card)
            version = self._claim(name)
            uploaded = [self._key(name, version, CLAIM)]
            try:
                with self._errors(f"uploading {name} {version}"):
                    for filename in manifest["files"]:
                        key = self._key(name, version, filename)
                        self.client.upload_file(str(Path(folder) / filename), self.bucket, key)
                        uploaded.append(key)
                    self.client.upload_file(str(Path(folder) / MANIFEST), self.bucket,
                                            self._key(name, version, MANIFEST))
            except BaseException:
                self._delete(uploaded)  # nothing half-published stays behind
                raise
        self.published(name, version)
        return version

    def _claim(self, name: str) -> str:
        """Reserve the next free version number with a conditional write."""
        _, highest = self._numbers(name)
        with self._errors(f"claiming a version of {name}"):
            for number in range(highest + 1, highest + 101):
                try:
                    self.client.put_object(Bucket=self.bucket, Body=b"", IfNoneMatch="*",
                                           Key=self._key(name, f"v{number}", CLAIM))
                except botocore.exceptions.ClientError as exc:
                    if _code(exc) in CONFLICT:
                        continue  # another publisher claimed this number first
                    raise
                return f"v{number}"
        raise StoreError(f"could not find a free version number for {name}")

    def _delete(self, keys: list[str]) -> None:
        """Remove objects, best effort (the caller is already handling a failure)."""
        try:
            self.client.delete_objects(Bucket=self.bucket,
                                       Delete={"Objects": [{"Key": k} for k in keys]})
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError):
            pass  # left-overs have no manifest: readers never see them

    def _manifest(self, name: str, version: str) -> bytes:
        """The manifest of a published version, or StoreError when it does not exist."""
        found = None
        if VERSION_PATTERN.match(version):
            with self._errors(f"reading {name} {version}"):
                found = self._get(self._key(check_name(name), version, MANIFEST))
        if found is None:
            raise StoreError(f"{name} {version} does not exist in the model store {self.url}")
        return found[0]

    def read_file(self, name: str, version: str, filename: str) -> bytes:
        """One file of a published version, checked against its manifest."""
        expected = json.loads(self._manifest(name, version))["files"].get(filename)
        with self._errors(f"reading {name} {version} {filename}"):
            found = self._get(self._key(name, version, filename)) if expected else None
        if found is None or hashlib.sha256(found[0]).hexdigest() != expected:
            raise StoreError(f"{name} {version}: {filename} is missing or damaged")
        return found[0]

    def open(self, name: str, version: str | None = None) -> Path:
        """A verified local copy of a version (the latest when version is None)."""
        version = version or self.latest(name)
        if version is None:
            raise never_trained(name)
        manifest = self._manifest(name, version)
        folder = self.cache / name / version
        return _cached(folder, name, version, manifest) or self._download(
            name, version, manifest, folder)

    def _download(self, name: str, version: str, manifest: bytes, folder: Path) -> Path:
        """Download a version into a staging folder, verify it, rename it into place.

        Processes that share the cache may download the same version at once: the first
        rename wins, and a copy in place is never removed while it is intact, since
        another process may be loading from it. Only a damaged or stale copy is moved
        aside (itself with a rename) for this one."""
        staging = folder.parent / f".download-{uuid.uuid4().hex}"
        staging.mkdir(parents=True)
        try:
            for filename in json.loads(manifest)["files"]:
                with self._errors(f"downloading {name} {version} {filename}"):
                    found = self._get(self._key(name, version, filename))
                if found is None:
                    raise StoreError(f"{name} {version}: {filename} is missing or damaged")
                (staging / filename).write_bytes(found[0])
            (staging / MANIFEST).write_bytes(manifest)
            verify(staging, name, version)
            for _ in range(3):
                try:
                    staging.rename(folder)  # fails while a copy (not an empty folder) is there
                    return folder
                except OSError:
                    if in_place := _cached(folder, name, version, manifest):
                        return in_place  # another process put an intact copy there first
                    _move_aside(folder)
            raise StoreError(f"{name} {version}: could not put a copy in the cache {folder}")
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def location(self, name: str, version: str | None = None) -> str:
        """The model's (or version's) s3:// URL."""
        return f"s3://{self.bucket}/{self._key(name, version or '')}"

    def _read_aliases(self, name: str) -> tuple[dict, object]:
        with self._errors(f"reading the aliases of {name}"):
            found = self._get(self._key(name, ALIASES))
        if found is None:
            return empty_aliases(), None
        return json.loads(found[0]), found[1]

    def _write_aliases(self, name: str, document: dict, token: object) -> bool:
        condition = {"IfMatch": token} if token else {"IfNoneMatch": "*"}
        body = (json.dumps(document, indent=2) + "\n").encode()
        with self._errors(f"writing the aliases of {name}"):
            try:
                self.client.put_object(Bucket=self.bucket, Key=self._key(name, ALIASES),
                                       Body=body, ContentType="application/json", **condition)
            except botocore.exceptions.ClientError as exc:
                if _code(exc) in CONFLICT | MISSING:
                    return False  # changed since it was read: read again and retry
                raise
        return True


def _cached(folder: Path, name: str, version: str, manifest: bytes) -> Path | None:
    """The cached copy in `folder` when it holds exactly `manifest`'s files, intact."""
    try:
        if (folder / MANIFEST).read_bytes() == manifest:
            return verify(folder, name, version)
    except (OSError, StoreError):
        pass  # missing, damaged, or moved aside by another process meanwhile
    return None


def _move_aside(folder: Path) -> None:
    """Rename a damaged or stale cached copy out of the way, then remove it."""
    aside = folder.parent / f".stale-{uuid.uuid4().hex}"
    try:
        folder.rename(aside)
    except OSError:
        return  # gone already: another process moved it
    shutil.rmtree(aside, ignore_errors=True)
