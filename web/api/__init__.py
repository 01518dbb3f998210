"""The JSON API under /api/v1, and the health checks /healthz and /readyz.

`init_app` registers the blueprints, the problem-details errors and the `flask tokens`
commands. The API's settings (SIEVE_RATE_LIMIT, SIEVE_MAX_IMAGES, ...) are in the app's
configuration, derived from `sieve.config` by `web.settings.flask_config`.
"""

from flask import Blueprint, Flask

bp = Blueprint("api", __name__, url_prefix="/api/v1")

def _configure(app: Flask) -> None:
    """Parse the rate limit of the app's configuration once."""
    from web.api.limits import parse_rate

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

