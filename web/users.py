"""User accounts: creating them, checking passwords, the signed-in user of a request.

Passwords are hashed with argon2; hashes made with bcrypt (an older scheme) still verify
and are replaced by argon2 hashes the next time their owner signs in. Used by the pages
and by the JSON API.
"""

import functools
import re

from flask import Flask, g, redirect, request, session, url_for
from passlib.context import CryptContext

from sieve.database import DuplicateEmail
from sieve.models import User
from web.services import services

__all__ = ["DuplicateEmail", "WeakPassword", "authenticate", "change_password", "create_user",
           "current_user"]

PASSWORDS = CryptContext(schemes=["argon2", "bcrypt"], deprecated="auto")
MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 1024  # hashing cost grows with length: refuse megabyte passwords
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
COMMON_PASSWORDS = frozenset({
    "password", "password1", "password12", "password123", "1234567890", "0123456789",
    "qwertyuiop", "1q2w3e4r5t", "iloveyou12", "letmein123", "welcome123", "abcdefghij",
    "sunshine12", "football12", "passw0rd12", "administrator", "qwerty1234",
})


class AccountError(ValueError):
    """An account cannot be created as asked; the message says why."""


class WeakPassword(AccountError):
    """The password is too easy to guess."""


class InvalidEmail(AccountError):
    """The email address is not one."""


def password_problem(password: str, email: str = "") -> str | None:
    """Why a password is too weak, or None when it will do."""
    if len(password) < MIN_PASSWORD_LENGTH:
        return f"The password must have at least {MIN_PASSWORD_LENGTH} characters."
    if len(password) > MAX_PASSWORD_LENGTH:
        return f"The password must have at most {MAX_PASSWORD_LENGTH} characters."
    if password.lower() in COMMON_PASSWORDS or len(set(password)) < 4:
        return "That password is among the first ones attackers try; choose another."
    if email and email.split("@")[0].lower() in password.lower():
        return "The password must not contain your email address."
    return None


def hash_password(password: str) -> str:
    """An argon2 hash of the password."""
    return PASSWORDS.hash(password)


def create_user(email: str, password: str, is_admin: bool = False) -> User:
    """A new account; InvalidEmail, WeakPassword or DuplicateEmail when it cannot be."""
    email = email.strip().lower()
    if not EMAIL.match(email) or len(email) > 254:
        raise InvalidEmail("That is not an email address.")
    problem = password_problem(password, email)
    if problem:
        raise WeakPassword(problem)
    return services().db.create_user(email, hash_password(password), is_admin=is_admin)


def authenticate(email: str, password: str) -> User | None:
    """The account if the password is right, else None; upgrades old bcrypt hashes."""
    db = services().db
    user = db.user_by_email(email)
    if user is None or len(password) > MAX_PASSWORD_LENGTH:
        PASSWORDS.dummy_verify()  # as slow as a real check: no hint that the email is free
        return None
    valid, new_hash = PASSWORDS.verify_and_update(password, user.password_hash)
    if not valid:
        return None
    if new_hash:
        db.set_password_hash(user.id, new_hash)
        user.password_hash = new_hash
    return user


def login(user: User) -> None:
    """Start a new session for the user (a fresh session: no fixation), under the
    account's current session version."""
    session.clear()
    session["user_id"] = user.id
    session["session_version"] = user.session_version
    session.permanent = True


def logout() -> None:
    """End the session, and every other session of the account: a copy of the cookie
    stops working too (the session version moves on)."""
    user = current_user()
    if user is not None:
        services().db.end_sessions(user.id)
    session.clear()


def change_password(user: User, password: str) -> None:
    """Set a new password (WeakPassword if it will not do); every session of the account
    ends, except the one of this request, which moves to the new version."""
    problem = password_problem(password, user.email)
    if problem:
        raise WeakPassword(problem)
    db = services().db
    db.set_password_hash(user.id, hash_password(password), end_sessions=True)
    login(db.get_user(user.id))


def current_user() -> User | None:
    """The signed-in user of this request, or None."""
    return g.get("user")


def login_required(view):
    """Send people who are not signed in to the login page, then back."""

    @functools.wraps(view)
    def wrapped(**kwargs):
        if current_user() is None:
            return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))
        return view(**kwargs)

    return wrapped


def _load_user() -> None:
    """Find the session's user once per request; a session made under an older session
    version of the account (before a logout or a password change) is ended."""
    user_id = session.get("user_id")
    user = services().db.get_user(user_id) if user_id is not None else None
    if user is not None and session.get("session_version") != user.session_version:
        user = None
    if user is None and user_id is not None:
        session.clear()
    g.user = user


def init_app(app: Flask) -> None:
    """Load the signed-in user before each request; make it known to the templates."""
    app.before_request(_load_user)
    app.context_processor(lambda: {"current_user": current_user()})
