"""The model store: published model versions in a local folder, one folder per version.

Layout: `<root>/<name>/<version>/` holds the artifact files and `MANIFEST.json`, which
lists every file with its sha256. A version is assembled in a hidden staging folder and
renamed into place with the manifest already written, so a reader sees either a complete
version or none; files are verified against the manifest when a version is opened.

    python -m training.store list            # every model and its versions
    python -m training.store has classifier  # exit 0 when a version exists
"""

import argparse
import hashlib
import json
import os
import re
import shutil
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

from training.config import load_settings

MANIFEST = "MANIFEST.json"
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


class StoreError(RuntimeError):
    """A missing, incomplete or damaged model version."""


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class ModelStore:
    """Published model versions under a local folder."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def _model_dir(self, name: str) -> Path:
        if not NAME_PATTERN.match(name):
            raise StoreError(
                f"invalid model name {name!r}: use lower-case letters, digits, - and _"
            )
        return self.root / name

    def versions(self, name: str) -> list[str]:
        """Published versions of a model, oldest first."""
        folder = self._model_dir(name)
        if not folder.is_dir():
            return []
        found = [p.name for p in folder.iterdir() if re.fullmatch(r"v\d+", p.name)]
        return sorted(found, key=lambda v: int(v[1:]))

    def latest(self, name: str) -> str | None:
        """The newest published version, or None."""
        versions = self.versions(name)
        return versions[-1] if versions else None

    def models(self) -> list[str]:
        """Names of the models with at least one version."""
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and self.versions(p.name))

    def publish(self, name: str, files: dict[str, Path], card: dict) -> str:
        """Copy artifact files and the model card into a new version; return the version."""
        staging = self._model_dir(name) / f".staging-{uuid.uuid4().hex}"
        staging.mkdir(parents=True)
        try:
            for filename, source in files.items():
                shutil.copyfile(source, staging / filename)
            (staging / "card.json").write_text(json.dumps(card, indent=2) + "\n")
            manifest = {
                "name": name,
                "created": datetime.now(UTC).isoformat(timespec="seconds"),
                "files": {p.name: sha256_file(p) for p in sorted(staging.iterdir())},
            }
            (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
            return self._commit(name, staging)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def _commit(self, name: str, staging: Path) -> str:
        """Rename the staging folder to the next free version number."""
        for _ in range(100):
            latest = self.latest(name)
            version = f"v{int(latest[1:]) + 1 if latest else 1}"
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
            raise StoreError(
                f"no {name} has been trained yet: run "
                f"`python -m training.train --train --model {name}`"
            )
        folder = self._model_dir(name) / version
        manifest_path = folder / MANIFEST
        if not manifest_path.is_file():
            raise StoreError(f"{name} {version} does not exist in the model store {self.root}")
        manifest = json.loads(manifest_path.read_text())
        for filename, expected in manifest["files"].items():
            path = folder / filename
            if not path.is_file() or sha256_file(path) != expected:
                raise StoreError(f"{name} {version}: {filename} is missing or damaged")
        return folder

    def card(self, name: str, version: str | None = None) -> dict:
        """The model card of a verified version."""
        return json.loads((self.open(name, version) / "card.json").read_text())


def open_store(url: str | None = None) -> ModelStore:
    """The store at MODEL_STORE_URL (a local folder, optionally as a file:// URL)."""
    url = url or load_settings().model_store_url
    url = url.removeprefix("file://")
    if "://" in url:
        raise StoreError(
            f"MODEL_STORE_URL={url}: only local folders are supported by this version"
        )
    return ModelStore(url)


def main(argv: list[str] | None = None) -> int:
    """Command line: list models, or test whether one has a version."""
    parser = argparse.ArgumentParser(prog="python -m training.store", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="list models and their versions")
    has = sub.add_parser("has", help="exit 0 when the model has a published version")
    has.add_argument("name")
    args = parser.parse_args(argv)
    store = open_store()
    if args.command == "has":
        return 0 if store.latest(args.name) else 1
    for name in store.models():
        print(f"{name}: {', '.join(store.versions(name))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
