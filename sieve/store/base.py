"""What every model store offers, the names of its files, and the checks they share."""

import copy
import hashlib
import json
import re
import shutil
from abc import ABC, abstractmethod
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

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
            raise never_trained(name)
        return json.loads(self.read_file(name, version, CARD))


def never_trained(name: str) -> StoreError:
    """The error for a model without any published version."""
    return StoreError(
        f"no {name} has been trained yet: run `python -m training.train --train --model {name}`"
    )
