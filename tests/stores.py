"""Helpers for tests that need model versions in a store of their own."""

import json

from training.store import CARD, MANIFEST, Store


def copy_version(source: Store, target: Store, name: str, version: str | None = None) -> str:
    """Publish a version of `source` (the latest by default) again in `target`."""
    folder = source.open(name, version)
    files = {p.name: p for p in folder.iterdir() if p.name not in (MANIFEST, CARD)}
    return target.publish(name, files, json.loads((folder / CARD).read_text()))
