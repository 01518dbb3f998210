"""The local model store: atomic versions, verification on open, the `has` command."""

import json
import threading

import pytest

from sieve.store import ModelStore, StoreError, open_store
from sieve.store import __main__ as store_module


@pytest.fixture
def artifact(tmp_path):
    """A fake weights file to publish."""
    path = tmp_path / "model.pt"
    path.write_bytes(b"weights")
    return {"model.pt": path}


def test_publish_creates_numbered_verified_versions(tmp_path, artifact):
    """Each publish adds the next version with a manifest of checksums."""
    store = ModelStore(tmp_path / "store")
    assert store.latest("classifier") is None
    assert store.publish("classifier", artifact, {"n": 1}) == "v1"
    assert store.publish("classifier", artifact, {"n": 2}) == "v2"
    assert store.versions("classifier") == ["v1", "v2"]
    assert store.card("classifier")["n"] == 2
    manifest = json.loads((store.open("classifier", "v1") / "MANIFEST.json").read_text())
    assert set(manifest["files"]) == {"model.pt", "card.json"}
    assert store.models() == ["classifier"]
    assert not list((tmp_path / "store" / "classifier").glob(".staging-*"))


def test_damaged_or_missing_versions_are_refused(tmp_path, artifact):
    """A changed file, a missing version and an empty store give clear errors."""
    store = ModelStore(tmp_path)
    store.publish("filter", artifact, {})
    (tmp_path / "filter" / "v1" / "model.pt").write_bytes(b"tampered")
    with pytest.raises(StoreError, match="missing or damaged"):
        store.open("filter")
    with pytest.raises(StoreError, match="does not exist"):
        store.open("filter", "v7")
    with pytest.raises(StoreError, match="no classifier has been trained yet: run"):
        store.open("classifier")
    with pytest.raises(StoreError, match="invalid model name"):
        store.versions("../etc")


def test_a_staged_version_without_manifest_is_invisible(tmp_path, artifact):
    """Half-written folders (no manifest, not renamed) never count as versions."""
    store = ModelStore(tmp_path)
    (tmp_path / "classifier" / ".staging-abc").mkdir(parents=True)
    assert store.versions("classifier") == []
    store.publish("classifier", artifact, {})
    assert store.versions("classifier") == ["v1"]


def test_concurrent_publishers_get_distinct_versions(tmp_path, artifact):
    """Two publishers racing never overwrite each other's version."""
    store = ModelStore(tmp_path)
    results = []
    threads = [threading.Thread(target=lambda: results.append(
        store.publish("classifier", artifact, {}))) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(results, key=lambda v: int(v[1:])) == [f"v{i}" for i in range(1, 7)]


def test_open_store_reads_the_environment(tmp_path, monkeypatch):
    """MODEL_STORE_URL picks the folder or S3; URLs of other kinds are refused clearly."""
    monkeypatch.setenv("MODEL_STORE_URL", f"file://{tmp_path}")
    assert open_store().root == tmp_path
    s3 = open_store("s3://bucket/some/prefix")  # connects to nothing until used
    assert (s3.bucket, s3.prefix, s3.url) == ("bucket", "some/prefix/", "s3://bucket/some/prefix/")
    with pytest.raises(StoreError, match="use a local folder, a file:// URL or s3://"):
        open_store("gs://bucket/prefix")


def test_has_command_exit_codes(tmp_path, artifact, monkeypatch, capsys):
    """`python -m sieve.store has NAME` exits 0 only when a version exists."""
    monkeypatch.setenv("MODEL_STORE_URL", str(tmp_path))
    assert store_module.main(["has", "classifier"]) == 1
    ModelStore(tmp_path).publish("classifier", artifact, {})
    assert store_module.main(["has", "classifier"]) == 0
    assert store_module.main(["list"]) == 0
    assert "classifier: v1" in capsys.readouterr().out
