"""Sieve's one settings object (sieve/config.py): where each value comes from, and how the
web tier's Flask configuration follows from it."""

import pytest

from sieve.config import ROOT, Settings, get_settings, read_settings
from web import create_app
from web.settings import flask_config


@pytest.fixture
def env_file(tmp_path, monkeypatch):
    """A `.env` file of its own, and none of the variables the tests set."""
    for name in ("SIEVE_TOP_K", "REDIS_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND",
                 "SIEVE_SSE_MAX_SECONDS", "SAGEMAKER_REGION", "AWS_REGION",
                 "AWS_DEFAULT_REGION", "SAGEMAKER_INSTANCE_TYPE"):
        monkeypatch.delenv(name, raising=False)
    path = tmp_path / ".env"
    path.write_text("SIEVE_TOP_K=5\nREDIS_URL=redis://from-the-file:6379/0\n")
    return path


def test_the_environment_wins_over_env_and_env_over_the_default(env_file, monkeypatch):
    assert Settings(_env_file=None).top_k == 3  # the embedded default
    assert Settings(_env_file=env_file).top_k == 5  # .env
    monkeypatch.setenv("SIEVE_TOP_K", "7")
    assert Settings(_env_file=env_file).top_k == 7  # the environment
    monkeypatch.setenv("SIEVE_TOP_K", "")
    assert Settings(_env_file=env_file).top_k == 5  # an empty value is unset


def test_celery_uses_redis_unless_named_on_its_own(env_file, monkeypatch):
    settings = Settings(_env_file=env_file)
    assert settings.broker_url == settings.result_backend == "redis://from-the-file:6379/0"
    monkeypatch.setenv("CELERY_BROKER_URL", "redis://broker:6379/1")
    settings = Settings(_env_file=env_file)
    assert (settings.broker_url, settings.result_backend) == (
        "redis://broker:6379/1", "redis://from-the-file:6379/0")


def test_the_sagemaker_section_reads_its_variables_and_aws_region(env_file, monkeypatch):
    assert Settings(_env_file=None).sagemaker.region == "us-east-1"
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    assert Settings(_env_file=None).sagemaker.region == "eu-west-1"
    monkeypatch.setenv("SAGEMAKER_REGION", "ap-south-1")
    monkeypatch.setenv("SAGEMAKER_INSTANCE_TYPE", "ml.c5.xlarge")
    section = Settings(_env_file=None).sagemaker
    assert (section.region, section.training_instance_type) == ("ap-south-1", "ml.c5.xlarge")


@pytest.mark.parametrize("raw, expected", [
    ("", ()), ("hooks.internal", ("hooks.internal",)),
    (" hooks.internal , 10.0.0.0/8,", ("hooks.internal", "10.0.0.0/8")),
])
def test_webhook_hosts_are_a_comma_separated_list(monkeypatch, raw, expected):
    monkeypatch.setenv("SIEVE_WEBHOOK_ALLOW_HOSTS", raw)
    assert read_settings().webhook_allow_hosts == expected


def test_a_value_of_the_wrong_kind_is_refused_with_its_variable(monkeypatch):
    monkeypatch.setenv("SIEVE_TOP_K", "three")
    with pytest.raises(ValueError, match="SIEVE_TOP_K='three'"):
        read_settings()


def test_a_process_reads_its_settings_once(monkeypatch):
    first = get_settings()
    assert get_settings() is first  # the same environment: not read again
    monkeypatch.setenv("SIEVE_TOP_K", str(first.top_k + 1))
    changed = get_settings()  # the process changed its environment: read anew
    assert changed.top_k == first.top_k + 1 and get_settings() is changed


def test_flask_configuration_follows_the_settings_and_test_config_wins(monkeypatch):
    monkeypatch.setenv("SIEVE_SSE_MAX_SECONDS", "42")
    monkeypatch.setenv("SIEVE_ENV", "development")
    settings = read_settings()
    config = flask_config(settings)
    assert config["SIEVE_SSE_MAX_SECONDS"] == 42.0
    assert "SSE_MAX_SECONDS" not in config  # one key per setting
    assert config["MAX_CONTENT_LENGTH"] == int(settings.max_upload_mb * 1024 * 1024)
    assert config["SESSION_COOKIE_SECURE"] is False  # development
    assert flask_config(settings.replace(env="production"))["SESSION_COOKIE_SECURE"] is True
    app = create_app({"TESTING": True, "SECRET_KEY": "k" * 8 + "0123456789abcdefghijklmnopqrstuv",
                      "SIEVE_SSE_MAX_SECONDS": 3, "DATABASE_URL": "sqlite://"})
    assert app.config["SIEVE_SSE_MAX_SECONDS"] == 3
    assert app.config["SIEVE_MAX_IMAGES"] == settings.max_images


def test_paths_default_under_the_project_root(monkeypatch):
    for name in ("DATABASE_URL", "SIEVE_SECRET_KEY_FILE", "MODEL_STORE_URL"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings(_env_file=None)
    assert settings.secret_key_file == ROOT / "var" / "secret-key"
    assert settings.database_url == f"sqlite:///{ROOT / 'var' / 'sieve.db'}"
    assert settings.model_store_url == str(ROOT / "var" / "models")
