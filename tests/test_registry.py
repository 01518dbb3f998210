"""Both model-store backends (a local folder, and S3 on moto's server and on SeaweedFS)
and the registry's aliases: the same tests run against each backend."""

import hashlib
import json
import threading

import boto3
import pytest

from sieve import registry
from sieve.store import ModelStore, StoreError, open_store
from sieve.store.s3 import S3Store
from tests.stores import S3_SERVERS, new_bucket, point_boto3_at


@pytest.fixture(params=["local", *S3_SERVERS])
def store(request, tmp_path, monkeypatch):
    """An empty store of each kind: a local folder, and S3 on each test S3 server."""
    if request.param == "local":
        return ModelStore(tmp_path / "store")
    server = request.getfixturevalue(f"{request.param}_s3_server")
    point_boto3_at(server.url, tmp_path, monkeypatch)
    return open_store(new_bucket(server.url))


def _publish(store, tmp_path, name="classifier", accuracy=0.5, weights=b"weights") -> str:
    """Publish a fake version with a card like the training CLI writes."""
    path = tmp_path / f"model-{accuracy}.pt"
    path.write_bytes(weights)
    card = {"name": name, "created": "2026-01-01T00:00:00+00:00",
            "metrics": {"test_accuracy": accuracy, "held_out_auroc": accuracy},
            "data": {"name": "fashion-mnist", "checksum": "abc", "test": 10000}}
    return store.publish(name, {"model.pt": path}, card)


def test_publish_open_and_verify(store, tmp_path):
    """Versions are numbered, opened as verified local folders, and read back intact."""
    assert store.latest("classifier") is None and store.models() == []
    assert _publish(store, tmp_path, accuracy=0.1) == "v1"
    assert _publish(store, tmp_path, accuracy=0.2, weights=b"other") == "v2"
    assert store.versions("classifier") == ["v1", "v2"]
    assert store.models() == ["classifier"]
    folder = store.open("classifier", "v1")
    assert (folder / "model.pt").read_bytes() == b"weights"
    manifest = json.loads((folder / "MANIFEST.json").read_text())
    assert set(manifest["files"]) == {"model.pt", "card.json"}
    assert store.card("classifier")["metrics"]["test_accuracy"] == 0.2
    assert store.open("classifier").joinpath("model.pt").read_bytes() == b"other"
    with pytest.raises(StoreError, match="does not exist"):
        store.open("classifier", "v9")
    with pytest.raises(StoreError, match="no filter has been trained yet"):
        store.open("filter")


def test_s3_layout_manifest_last_and_damage_detected(s3_store_url, s3_env, tmp_path):
    """On S3: a version without its manifest is invisible; a changed object is refused,
    also when an intact copy was cached before."""
    store = open_store(s3_store_url)
    s3 = boto3.client("s3", endpoint_url=s3_env["AWS_ENDPOINT_URL"])
    assert _publish(store, tmp_path) == "v1"
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=store.bucket)["Contents"]}
    assert keys == {f"models/classifier/v1/{f}" for f in
                    ("model.pt", "card.json", "MANIFEST.json", ".claim")}
    # A publisher that died half-way: files and a claim, no manifest.
    s3.put_object(Bucket=store.bucket, Key="models/classifier/v2/.claim", Body=b"")
    s3.put_object(Bucket=store.bucket, Key="models/classifier/v2/model.pt", Body=b"half")
    assert store.versions("classifier") == ["v1"]
    assert _publish(store, tmp_path) == "v3"  # the dead claim's number is skipped

    cached = store.open("classifier", "v1")
    s3.put_object(Bucket=store.bucket, Key="models/classifier/v1/model.pt", Body=b"tampered")
    with pytest.raises(StoreError, match="model.pt is missing or damaged"):
        S3Store.from_url(s3_store_url, tmp_path / "fresh-cache",
                         s3_env["AWS_ENDPOINT_URL"]).open("classifier", "v1")
    (cached / "model.pt").write_bytes(b"tampered")  # a damaged cached copy is not trusted
    with pytest.raises(StoreError, match="model.pt is missing or damaged"):
        store.open("classifier", "v1")


def test_s3_a_cached_copy_in_use_is_never_replaced(s3_store_url, s3_env, tmp_path):
    """Two workers sharing a cache open one version at once: the one that finishes second
    uses the copy the first put in place, and leaves it there (the first may be loading
    from it), with no download folder left behind."""
    endpoint, cache = s3_env["AWS_ENDPOINT_URL"], tmp_path / "shared-cache"
    assert _publish(open_store(s3_store_url), tmp_path) == "v1"
    first = S3Store.from_url(s3_store_url, cache, endpoint)
    second = S3Store.from_url(s3_store_url, cache, endpoint)
    waiting, go = threading.Event(), threading.Event()

    def hold(params, **_kwargs):
        """The second worker's download of model.pt waits until the test lets it go on."""
        if params["Key"].endswith("/model.pt"):
            waiting.set()
            go.wait(30)

    second.client.meta.events.register("before-parameter-build.s3.GetObject", hold)
    opened = []
    thread = threading.Thread(target=lambda: opened.append(second.open("classifier", "v1")))
    thread.start()
    try:
        assert waiting.wait(30), "the second worker never started its download"
        folder = first.open("classifier", "v1")
        in_place = folder.stat().st_ino
    finally:
        go.set()
        thread.join(timeout=30)
    assert opened == [folder]
    assert folder.stat().st_ino == in_place
    assert (folder / "model.pt").read_bytes() == b"weights"
    assert [p.name for p in folder.parent.iterdir()] == ["v1"]


def test_s3_a_stale_cached_copy_is_replaced(s3_store_url, s3_env, tmp_path):
    """A cached copy of other files under the same version (a bucket made again) is intact
    by its own manifest, but not the store's version: it is downloaded again."""
    store = open_store(s3_store_url)
    assert _publish(store, tmp_path) == "v1"
    cached = store.open("classifier", "v1")
    (cached / "model.pt").write_bytes(b"old")
    manifest = json.loads((cached / "MANIFEST.json").read_text())
    manifest["files"]["model.pt"] = hashlib.sha256(b"old").hexdigest()
    (cached / "MANIFEST.json").write_text(json.dumps(manifest))
    assert (store.open("classifier", "v1") / "model.pt").read_bytes() == b"weights"
    assert [p.name for p in cached.parent.iterdir()] == ["v1"]


def test_s3_concurrent_publishers_get_distinct_versions(s3_store_url, tmp_path):
    """Conditional claims: publishers racing on S3 never share a version number."""
    store = open_store(s3_store_url)
    results, errors = [], []

    def publish(i):
        try:
            results.append(_publish(store, tmp_path, accuracy=i / 10))
        except StoreError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=publish, args=(i,)) for i in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors
    assert sorted(results, key=lambda v: int(v[1:])) == [f"v{i}" for i in range(1, 6)]


def test_s3_unreachable_or_missing_bucket_says_so(s3_env, tmp_path):
    """Errors name the store and what to do."""
    with pytest.raises(StoreError, match="bucket sieve-nowhere does not exist"):
        open_store("s3://sieve-nowhere/models").versions("classifier")
    offline = S3Store("bucket", "", tmp_path, endpoint_url="http://127.0.0.1:1")
    with pytest.raises(StoreError, match="cannot reach the model store s3://bucket/"):
        offline.versions("classifier")


def test_promote_rollback_and_history(store, tmp_path):
    """The served version follows production, else the latest; rollback goes back."""
    for accuracy in (0.1, 0.2, 0.3):
        _publish(store, tmp_path, accuracy=accuracy)
    assert store.served("classifier") == "v3"  # no alias: the latest, as before aliases
    registry.promote("classifier", "v1", store=store, by="test")
    assert store.served("classifier") == "v1"
    registry.promote("classifier", "v2", store=store)
    registry.promote("classifier", "v2", store=store)  # already there: no change
    registry.promote("classifier", "v3", alias="staging", store=store)
    assert store.aliases("classifier") == {"production": "v2", "staging": "v3"}
    assert store.resolve("classifier", "staging") == "v3"
    assert registry.rollback("classifier", store=store)["version"] == "v1"
    with pytest.raises(StoreError, match="no earlier version to roll back to"):
        registry.rollback("classifier", store=store)
    with pytest.raises(StoreError, match="v7 is not published"):
        registry.promote("classifier", "v7", store=store)
    steps = [(h["action"], h["alias"], h["from"], h["version"])
             for h in registry.history("classifier", store=store)]
    assert steps == [("promote", "production", None, "v1"), ("promote", "production", "v1", "v2"),
                     ("promote", "staging", None, "v3"), ("rollback", "production", "v2", "v1")]
    listed = registry.list_models(store)
    assert [m["name"] for m in listed] == ["classifier"] and listed[0]["served"] == "v1"
    assert [(v["version"], v["aliases"], v["value"]) for v in listed[0]["versions"]] == [
        ("v1", ["production"], 0.1), ("v2", [], 0.2), ("v3", ["staging"], 0.3)]
    assert registry.show("classifier", store=store)["version"] == "v1"


def test_concurrent_promotions_lose_no_update(store, tmp_path):
    """Each alias update is conditional: writers racing all land in the history."""
    for _ in range(4):
        _publish(store, tmp_path)
    threads = [threading.Thread(target=registry.promote, args=("classifier", f"v{i}"),
                                kwargs={"store": store, "alias": f"a{i}"}) for i in range(1, 5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert store.aliases("classifier") == {f"a{i}": f"v{i}" for i in range(1, 5)}
    assert len(registry.history("classifier", store=store)) == 4


def test_promote_if_better(store, tmp_path):
    """Automatic promotion only when the new version beats production on the same tests."""
    _publish(store, tmp_path, accuracy=0.5)
    assert registry.promote_if_better("classifier", "v1", store=store)[0]
    _publish(store, tmp_path, accuracy=0.4)
    promoted, why = registry.promote_if_better("classifier", "v2", store=store)
    assert not promoted and "does not beat" in why
    _publish(store, tmp_path, accuracy=0.6)
    assert registry.promote_if_better("classifier", "v3", store=store)[0]
    assert store.served("classifier") == "v3"


def test_registry_command_line(s3_store_url, tmp_path, monkeypatch, capsys):
    """`python -m sieve.registry` against S3 from MODEL_STORE_URL."""
    monkeypatch.setenv("MODEL_STORE_URL", s3_store_url)
    store = open_store()
    _publish(store, tmp_path, accuracy=0.25)
    _publish(store, tmp_path, accuracy=0.75)
    assert registry.main(["promote", "classifier", "v1"]) == 0
    assert registry.main(["promote", "classifier", "v2"]) == 0
    assert registry.main(["rollback", "classifier"]) == 0
    assert registry.main(["list"]) == 0
    out = capsys.readouterr().out
    assert "classifier production -> v1" in out
    assert "classifier: serving v1 (production=v1)" in out and "test_accuracy 0.7500" in out
    assert registry.main(["--json", "history", "classifier"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 3
    assert registry.main(["promote", "classifier", "v5"]) == 2
    assert "error: classifier v5 is not published" in capsys.readouterr().err


def test_s3_upload_refused_half_way_leaves_no_version(s3_store_url, tmp_path):
    """An upload that S3 refuses is a StoreError (not an unexpected exception), and the
    half-uploaded version is removed."""
    import boto3.exceptions

    store = open_store(s3_store_url)
    upload_file, calls = store.client.upload_file, []

    def refuse_the_second(*args, **kwargs):
        calls.append(args)
        if len(calls) == 2:
            raise boto3.exceptions.S3UploadFailedError("Failed to upload: AccessDenied")
        return upload_file(*args, **kwargs)

    store.client.upload_file = refuse_the_second
    with pytest.raises(StoreError, match="uploading classifier v1 in s3://.* AccessDenied"):
        _publish(store, tmp_path)
    assert store.versions("classifier") == []
    assert not list(store._keys(store._key("classifier", "")))
