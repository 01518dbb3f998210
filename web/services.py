"""What the web tier talks to, built once per app: settings, database, Celery, events.

`init_app(app)` takes the process's settings (`sieve.config.get_settings()`) and lets the
Flask configuration override them (DATABASE_URL, REDIS_URL, CELERY_BROKER_URL,
CELERY_RESULT_BACKEND, MODEL_STORE_URL), so that tests can build an app on temporary
resources. Views reach them with `services()`. Nothing here imports torch.
"""

from dataclasses import dataclass

from celery import Celery
from flask import Flask, current_app

from sieve.config import Settings, get_settings
from sieve.database import Database
from sieve.pubsub import Events, Listener
from workers.celery_app import create_celery

OVERRIDABLE = {"DATABASE_URL": "database_url", "REDIS_URL": "redis_url",
               "CELERY_BROKER_URL": "broker_url", "CELERY_RESULT_BACKEND": "result_backend"}


@dataclass
class WebServices:
    """The web tier's connections; one per app."""

    settings: Settings
    db: Database
    celery: Celery
    events: Events
    listener: Listener  # one pub/sub connection per process for requests that wait


def init_app(app: Flask) -> WebServices:
    """Create the app's services from the settings and the app's configuration."""
    settings = get_settings()
    overrides = {field: app.config[key] for key, field in OVERRIDABLE.items()
                 if app.config.get(key)}
    if "REDIS_URL" in app.config and app.config["REDIS_URL"]:
        # One Redis for everything unless the broker or backend are named on their own.
        overrides.setdefault("broker_url", app.config["REDIS_URL"])
        overrides.setdefault("result_backend", app.config["REDIS_URL"])
    settings = settings.replace(**overrides)
    db, celery = Database(settings.database_url), create_celery(settings)
    built = WebServices(settings=settings, db=db, celery=celery,
                        events=Events(settings.redis_url), listener=Listener(settings.redis_url))
    app.extensions["sieve"] = built
    return built


def services() -> WebServices:
    """The current app's services."""
    return current_app.extensions["sieve"]
