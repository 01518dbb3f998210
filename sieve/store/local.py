"""The model store in a local folder: one folder per model, one per version inside it."""

import fcntl
import json
import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path

from sieve.store.base import (
    ALIASES,
    MANIFEST,
    NAME_PATTERN,
    VERSION_PATTERN,
    Store,
    StoreError,
    check_name,
    empty_aliases,
    never_trained,
    sha256_file,
    stage,
    verify,
    version_number,
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
            raise never_trained(name)
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
