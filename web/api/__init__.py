"""The JSON API under /api/v1, and the health checks /healthz and /readyz.

`init_app` reads the API's settings (environment first, then the Flask configuration),
registers the blueprints, the problem-details errors and the `flask tokens` commands.
"""

import os

from flask import Blueprint, Flask

bp = Blueprint("api", __name__, url_prefix="/api/v1")

# Setting -> (type, default). Each can come from the environment or the app's config.
SETTINGS = {
    "SIEVE_RATE_LIMIT": (str, "120/minute"),
    "SIEVE_MAX_QUEUE_DEPTH": (int, 1000),
    "SIEVE_BACKPRESSURE_RETRY_AFTER": (int, 10),
    "SIEVE_MAX_IMAGES": (int, 16),
    "SIEVE_MAX_IMAGE_BYTES": (int, 10 * 1024 * 1024),
    "SIEVE_POLL_AFTER": (int, 1),
    "SIEVE_MAX_WAIT_SECONDS": (float, 30.0),
    "SIEVE_SSE_KEEPALIVE_SECONDS": (float, 15.0),
    "SIEVE_SSE_MAX_SECONDS": (float, 300.0),
}


def _configure(app: Flask) -> None:
    """Fill the API settings in app.config: the app's value, the environment, the default."""
    from web.api.limits import parse_rate

    for name, (kind, default) in SETTINGS.items():
        raw = app.config.get(name, os.environ.get(name) or default)
        try:
            app.config[name] = kind(raw)
        except ValueError:
            raise ValueError(f"{name}={raw!r} is not {kind.__name__}") from None
    app.config["SIEVE_RATE_LIMIT_PARSED"] = parse_rate(app.config["SIEVE_RATE_LIMIT"])


def init_app(app: Flask) -> None:
    """Register the API on the app (called by web.create_app, after web.services)."""
    from web.api import (  # noqa: F401
        deliveries,
        errors,
        events,
        models,
        openapi,
        predictions,
        training,
    )
    from web.api.health import health
    from web.api.tokens import tokens_cli

    _configure(app)
    app.register_blueprint(bp)
    app.register_blueprint(health)
    errors.init_app(app)
    app.cli.add_command(tokens_cli)

