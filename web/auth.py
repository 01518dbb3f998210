"""Pages to register, log in and log out."""

import logging
from urllib.parse import urlsplit

import click
from flask import Blueprint, flash, redirect, render_template, request, url_for

from web import throttle, users
from web.forms import LoginForm, RegisterForm

bp = Blueprint("auth", __name__, cli_group=None)
log = logging.getLogger(__name__)


def _safe_next(target: str | None) -> str:
    """Where to go after logging in: a path on this site only, never another host."""
    if target and target.startswith("/") and not target.startswith("//") \
            and not urlsplit(target).netloc:
        return target
    return url_for("pages.index")


@bp.route("/register", methods=("GET", "POST"))
def register():
    """Create an account and sign in with it."""
    form = RegisterForm()
    if form.validate_on_submit():
        address = request.remote_addr or "unknown"
        wait = throttle.locked_for(form.email.data, address)
        if wait:
            return _locked("auth/register.html", form, wait)
        try:
            user = users.create_user(form.email.data, form.password.data)
        except users.DuplicateEmail:
            # Telling that an email has an account is the price of an open registration
            # without email verification; counted as a failed login, it is slowed down.
            wait = throttle.failed(form.email.data, address)
            if wait:
                return _locked("auth/register.html", form, wait)
            form.email.errors.append("An account with this email exists already; log in "
                                     "instead.")
        except users.InvalidEmail as exc:
            form.email.errors.append(str(exc))
        except users.WeakPassword as exc:
            form.password.errors.append(str(exc))
        else:
            log.info("user %s registered", user.id)
            users.login(user)
            flash("Welcome! Your account is ready.", "success")
            return redirect(url_for("pages.index"))
    status = 400 if form.is_submitted() else 200
    return render_template("auth/register.html", form=form), status


@bp.route("/login", methods=("GET", "POST"))
def login():
    """Sign in with email and password; repeated failures are slowed down."""
    form = LoginForm()
    if not form.validate_on_submit():
        status = 400 if form.is_submitted() else 200
        return render_template("auth/login.html", form=form), status
    email, address = form.email.data, request.remote_addr or "unknown"
    wait = throttle.locked_for(email, address)
    if wait:
        return _locked("auth/login.html", form, wait)
    user = users.authenticate(email, form.password.data)
    if user is None:
        log.info("failed login")
        wait = throttle.failed(email, address)
        if wait:
            return _locked("auth/login.html", form, wait)
        form.password.errors.append("Wrong email or password.")
        return render_template("auth/login.html", form=form), 401
    throttle.succeeded(email, address)
    users.login(user)
    log.info("user %s logged in", user.id)
    return redirect(_safe_next(request.args.get("next")))


def _locked(template: str, form, wait: int):
    """The login (or registration) page, saying how long to wait."""
    what = "logins" if template == "auth/login.html" else "attempts"
    form.password.errors.append(f"Too many failed {what}. Wait {wait} seconds and try again.")
    return render_template(template, form=form), 429, {"Retry-After": str(wait)}


@bp.route("/logout", methods=("POST",))
def logout():
    """End the session (a POST with the CSRF token: a link cannot log anyone out)."""
    users.logout()
    flash("You are logged out.", "info")
    return redirect(url_for("auth.login"))


@bp.cli.command("create-user")
@click.argument("email")
@click.option("--admin", is_flag=True, help="May manage models and training runs.")
@click.password_option()
def create_user_command(email: str, admin: bool, password: str) -> None:
    """Create an account from the command line (the password is prompted for)."""
    try:
        user = users.create_user(email, password, is_admin=admin)
    except (users.AccountError, users.DuplicateEmail) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"created user {user.id} <{user.email}>{' (admin)' if admin else ''}")
