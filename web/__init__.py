"""Sieve's Flask web tier: the pages a person uses in a browser, and the JSON API.

`create_app()` builds the app: `flask --app web run` in development, and in production
`gunicorn -k gevent -w 2 -b 0.0.0.0:8000 'web:create_app()'`. Nothing here imports torch:
uploads are sent to the workers by task name.
"""

from flask import Flask
from flask_wtf.csrf import CSRFProtect

csrf = CSRFProtect()


def create_app(test_config: dict | None = None) -> Flask:
    """Build the app: configuration from the settings (`sieve.config`), then `test_config`,
    then services."""
    from sieve.config import get_settings
    from web import (
        account_page,
        api,
        auth,
        errors,
        event_stream,
        pages,
        request_metrics,
        requestlog,
        security,
        services,
        settings,
        training_pages,
        users,
    )

    app = Flask(__name__)
    app.config.from_mapping(settings.flask_config(get_settings()))
    if test_config:
        app.config.from_mapping(test_config)
    settings.check(app)
    security.init_app(app)
    requestlog.init_app(app)
    services.init_app(app)
    request_metrics.init_app(app)
    csrf.init_app(app)
    users.init_app(app)
    app.register_blueprint(auth.bp)
    app.register_blueprint(pages.bp)
    app.register_blueprint(account_page.bp)
    app.register_blueprint(training_pages.bp)
    app.register_blueprint(event_stream.bp)
    api.init_app(app)
    csrf.exempt(api.bp)  # the API authenticates with bearer tokens, not cookies
    errors.init_app(app)
    return app
