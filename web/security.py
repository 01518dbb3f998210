"""Browser hardening and the client's address, for every response of the app.

- The client address: behind SIEVE_TRUSTED_PROXIES reverse proxies, werkzeug's ProxyFix
  takes it (and the scheme) from the X-Forwarded-For/-Proto headers those proxies set;
  with 0 (the default) the headers are ignored, since a client could write them itself.
- Headers: a strict Content-Security-Policy (scripts, styles and images from this site
  only; no inline script or style, no framing), X-Frame-Options, X-Content-Type-Options,
  Referrer-Policy, Cross-Origin-Opener-Policy, and HSTS in production. Pages that are
  not static files are never stored by caches (`Cache-Control: no-store`) unless the
  view chose its own caching: they show a user's data, and the account page a new token.

A small `after_request` rather than Flask-Talisman: that package has had no release
since 2023, and what Sieve needs fits on a screen.
"""

from flask import Flask, current_app, request
from werkzeug.middleware.proxy_fix import ProxyFix

CSP = "; ".join([
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self'",
    "connect-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
])
HSTS = "max-age=31536000; includeSubDomains"
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
}


def _harden(response):
    """Add the security headers a view did not set itself."""
    for name, value in HEADERS.items():
        response.headers.setdefault(name, value)
    if current_app.config["SIEVE_ENV"] == "production":
        response.headers.setdefault("Strict-Transport-Security", HSTS)
    if request.endpoint != "static" and "Cache-Control" not in response.headers:
        response.headers["Cache-Control"] = "no-store"
    return response


def init_app(app: Flask) -> None:
    """Read the client address through the trusted proxies; harden every response."""
    proxies = app.config["TRUSTED_PROXIES"]
    if proxies > 0:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=proxies, x_proto=proxies)
    app.after_request(_harden)
