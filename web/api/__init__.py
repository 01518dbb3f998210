"""The JSON API under /api/v1, and the health checks /healthz and /readyz."""

from flask import Blueprint, Flask

bp = Blueprint("api", __name__, url_prefix="/api/v1")


def init_app(app: Flask) -> None:
    """Register the API on the app (called by web.create_app)."""
    app.register_blueprint(bp)
