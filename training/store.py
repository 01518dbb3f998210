"""The model store: published model versions and the aliases that point at them.

A store holds, per model name, numbered versions `v1`, `v2`, ... Each version is a set of
artifact files (weights, model card, plots) plus `MANIFEST.json`, which lists every file
with its sha256 and is written last: a reader sees either a complete version or none, and
files are verified against the manifest when a version is opened. Next to the versions,
`ALIASES.json` names versions (`production`, `staging`, ...) and keeps their history; see
`training/registry.py`.

Two backends share this interface: a local folder (`ModelStore`, the default) and S3
(`training.s3store.S3Store`, for `MODEL_STORE_URL=s3://bucket/prefix`).

    python -m training.store list            # every model and its versions
    python -m training.store has classifier  # exit 0 when a version exists
"""

import argparse
import copy
import fcntl
import hashlib
import json
import os
import re
import shutil
import sys
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from training.config import load_settings

MANIFEST = "MANIFEST.json"
ALIASES = "ALIASES.json"
CARD = "card.json"
PRODUCTION = "production"
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
VERSION_PATTERN = re.compile(r"^v[1-9]\d*$")


class StoreError(RuntimeError):
    """A missing, incomplete or damaged model version, or a store that cannot be reached."""


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_name(name: str, what: str = "model name") -> str:
    """A model or alias name, or StoreError when it could escape the store's layout."""
    if not NAME_PATTERN.match(name or ""):
        raise StoreError(f"invalid {what} {name!r}: use lower-case letters, digits, - and _")
    return name


def version_number(version: str) -> int:
    """3 for "v3"."""
    return int(version[1:])


def empty_aliases() -> dict:
    """The aliases document of a model that has none yet."""
    return {"aliases": {}, "history": []}


def stage(folder: Path, name: str, files: dict[str, Path], card: dict) -> dict:
    """Copy artifacts and the card into `folder`; write and return the manifest (last)."""
    for filename, source in files.items():
        shutil.copyfile(source, folder / filename)
    (folder / CARD).write_text(json.dumps(card, indent=2) + "\n")
    manifest = {
        "name": name,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "files": {p.name: sha256_file(p) for p in sorted(folder.iterdir())},
    }
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def verify(folder: Path, name: str, version: str) -> Path:
    """Check every file of a version's folder against its manifest; return the folder."""
    manifest = json.loads((folder / MANIFEST).read_text())
    for filename, expected in manifest["files"].items():
        path = folder / filename
        if not path.is_file() or sha256_file(path) != expected:
            raise StoreError(f"{name} {version}: {filename} is missing or damaged")
    return folder


class Store(ABC):
    """What every backend offers: versions, verified opening, cards and aliases."""

    url: str
    # Told when the version served of a model changes (see `open_store`); None: nobody.
    announcer = None

    @abstractmethod
    def models(self) -> list[str]:
        """Names of the models with at least one version."""

    @abstractmethod
    def versions(self, name: str) -> list[str]:
        """Published versions of a model (those with a manifest), oldest first."""

    @abstractmethod
    def publish(self, name: str, files: dict[str, Path], card: dict) -> str:
        """Add artifact files and the model card as the next version; return the version."""

    @abstractmethod
    def open(self, name: str, version: str | None = None) -> Path:
        """Local folder of a verified version (the latest when version is None)."""

    @abstractmethod
    def read_file(self, name: str, version: str, filename: str) -> bytes:
        """One file of a published version, checked against its manifest."""

    @abstractmethod
    def location(self, name: str, version: str | None = None) -> str:
        """Where a model (or one version) lives, for messages."""

    @abstractmethod
    def _read_aliases(self, name: str) -> tuple[dict, object]:
        """The aliases document and a token that `_write_aliases` checks."""

    @abstractmethod
    def _write_aliases(self, name: str, document: dict, token: object) -> bool:
        """Replace the document if it is unchanged since `token` was read; False if not."""

    def latest(self, name: str) -> str | None:
        """The newest published version, or None."""
        versions = self.versions(name)
        return versions[-1] if versions else None

    def aliases(self, name: str) -> dict[str, str]:
        """Alias name -> version, for one model."""
        document, _ = self._read_aliases(check_name(name))
        return {alias: entry["version"] for alias, entry in document["aliases"].items()}

    def alias_document(self, name: str) -> dict:
        """Aliases with the versions each pointed at before, and the history of changes."""
        return self._read_aliases(check_name(name))[0]

    def update_aliases(self, name: str, change: Callable[[dict], dict]) -> dict:
        """Apply `change` to the aliases document; retried when another writer won. A
        change of the `production` alias is announced to the serving workers."""
        check_name(name)
        for _ in range(50):
            document, token = self._read_aliases(name)
            updated = change(copy.deepcopy(document))
            if self._write_aliases(name, updated, token):
                before, after = (d["aliases"].get(PRODUCTION, {}).get("version")
                                 for d in (document, updated))
                if after != before:
                    latest = self.latest(name)  # what is served where no alias pins one
                    if (after or latest) != (before or latest):
                        self.announce(name, after or latest)
                return updated
        raise StoreError(f"could not update the aliases of {name}: too many writers at once")

    def announce(self, name: str, version: str | None) -> None:
        """Tell the serving workers that `version` of `name` is now the one served."""
        if self.announcer is not None:
            self.announcer.announce(name, version)

    def published(self, name: str, version: str) -> None:
        """Announce a new version when it is served: no `production` alias pins another."""
        if self.announcer is not None and PRODUCTION not in self.aliases(name):
            self.announce(name, version)

    def served(self, name: str) -> str | None:
        """The version workers serve: the `production` alias when set, else the latest."""
        return self.aliases(name).get(PRODUCTION) or self.latest(name)

    def resolve(self, name: str, ref: str | None = None) -> str | None:
        """A version from a version (`v3`), an alias (`staging`) or None (the served one)."""
        if ref is None:
            return self.served(name)
        if VERSION_PATTERN.match(ref):
            return ref
        version = self.aliases(name).get(check_name(ref, "alias"))
        if version is None:
            raise StoreError(f"{name} has no version and no alias called {ref!r}")
        return version

    def card(self, name: str, version: str | None = None) -> dict:
        """The model card of a version (the latest by default), checked against its manifest."""
        version = version or self.latest(name)
        if version is None:
            raise _never_trained(name)
        return json.loads(self.read_file(name, version, CARD))


def _never_trained(name: str) -> StoreError:
    """The error for a model without any published version."""
    return StoreError(
        f"no {name} has been trained yet: run `python -m training.train --train --model {name}`"
    )


class ModelStore(Store):
    """Published model versions under a local folder, one folder per version."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.url = str(self.root)

    def _model_dir(self, name: str) -> Path:
        return self.root / check_name(name)

    def versions(self, name: str) -> list[str]:
        """Published versions of a model, oldest first."""
        folder = self._model_dir(name)
        if not folder.is_dir():
            return []
        found = [p.name for p in folder.iterdir() if VERSION_PATTERN.match(p.name)]
        return sorted(found, key=version_number)

    def models(self) -> list[str]:
        """Names of the models with at least one version."""
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir()
                      if p.is_dir() and NAME_PATTERN.match(p.name) and self.versions(p.name))

    def publish(self, name: str, files: dict[str, Path], card: dict) -> str:
        """Copy artifact files and the model card into a new version; return the version."""
        staging = self._model_dir(name) / f".staging-{uuid.uuid4().hex}"
        staging.mkdir(parents=True)
        try:
            stage(staging, name, files, card)
            version = self._commit(name, staging)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        self.published(name, version)
        return version

    def _commit(self, name: str, staging: Path) -> str:
        """Rename the staging folder to the next free version number."""
        for _ in range(100):
            latest = self.latest(name)
            version = f"v{version_number(latest) + 1 if latest else 1}"
            try:
                staging.rename(self._model_dir(name) / version)
            except OSError:
                continue  # another publisher took this number first: try the next one
            return version
        raise StoreError(f"could not find a free version number for {name}")

    def open(self, name: str, version: str | None = None) -> Path:
        """Folder of a verified version (the latest when version is None)."""
        version = version or self.latest(name)
        if version is None:
            raise _never_trained(name)
        folder = self._model_dir(name) / version
        if not VERSION_PATTERN.match(version) or not (folder / MANIFEST).is_file():
            raise StoreError(f"{name} {version} does not exist in the model store {self.root}")
        return verify(folder, name, version)

    def read_file(self, name: str, version: str, filename: str) -> bytes:
        """One file of a published version, checked against its manifest."""
        folder = self._model_dir(name) / version
        if not VERSION_PATTERN.match(version) or not (folder / MANIFEST).is_file():
            raise StoreError(f"{name} {version} does not exist in the model store {self.root}")
        expected = json.loads((folder / MANIFEST).read_text())["files"].get(filename)
        path = folder / filename
        if expected is None or not path.is_file() or sha256_file(path) != expected:
            raise StoreError(f"{name} {version}: {filename} is missing or damaged")
        return path.read_bytes()

    def location(self, name: str, version: str | None = None) -> str:
        """The model's (or version's) folder."""
        folder = self._model_dir(name)
        return str(folder / version if version else folder)

    def _read_aliases(self, name: str) -> tuple[dict, object]:
        path = self._model_dir(name) / ALIASES
        if not path.is_file():
            return empty_aliases(), None
        return json.loads(path.read_text()), path.stat().st_mtime_ns

    def _write_aliases(self, name: str, document: dict, token: object) -> bool:
        folder = self._model_dir(name)
        temporary = folder / f".aliases-{uuid.uuid4().hex}"
        temporary.write_text(json.dumps(document, indent=2) + "\n")
        os.replace(temporary, folder / ALIASES)  # readers see the old or the new file
        return True

    def update_aliases(self, name: str, change: Callable[[dict], dict]) -> dict:
        """Apply `change` under a file lock, so that two writers cannot lose an update."""
        folder = self._model_dir(name)
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / ".aliases.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                return super().update_aliases(name, change)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)


LocalStore = ModelStore


def open_store(url: str | None = None, redis_url: str | None = None) -> Store:
    """The store at `url` or MODEL_STORE_URL: a local folder (or file:// URL), or s3://.

    Its changes of the served versions are announced on `redis_url` (default: REDIS_URL,
    else the local Redis the workers use by default)."""
    settings = load_settings()
    url = url or settings.model_store_url
    if url.startswith("s3://"):
        from training.s3store import S3Store  # boto3 only where S3 is used

        store = S3Store.from_url(url, settings.model_cache_dir, settings.aws_endpoint_url)
    else:
        url = url.removeprefix("file://")
        if "://" in url:
            raise StoreError(
                f"MODEL_STORE_URL={url}: use a local folder, a file:// URL or s3://bucket/prefix"
            )
        store = ModelStore(url)
    store.announcer = _announcer(redis_url)
    return store


def _announcer(redis_url: str | None):
    """The announcer of served-version changes; None where Sieve's service package is not
    installed (a training job's container packs `training/` alone, and has no Redis)."""
    try:
        from sieve.config import DEFAULT_REDIS_URL
        from sieve.modelchanges import Announcer
    except ImportError:
        return None
    return Announcer(redis_url or os.environ.get("REDIS_URL") or DEFAULT_REDIS_URL)


def main(argv: list[str] | None = None) -> int:
    """Command line: list models, or test whether one has a version."""
    parser = argparse.ArgumentParser(prog="python -m training.store", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="list models and their versions")
    has = sub.add_parser("has", help="exit 0 when the model has a published version")
    has.add_argument("name")
    args = parser.parse_args(argv)
    try:
        store = open_store()
        if args.command == "has":
            return 0 if store.latest(args.name) else 1
        for name in store.models():
            print(f"{name}: {', '.join(store.versions(name))}")
    except StoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
