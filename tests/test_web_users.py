"""Accounts: password hashing, registration, login, logout, CSRF and login throttling."""

import pytest
from passlib.hash import bcrypt

from tests.fixtures_web import PASSWORD
from web import users


def test_passwords_are_hashed_with_argon2_and_verified():
    """A hash is argon2, never the password, and verifies only the right password."""
    hashed = users.hash_password(PASSWORD)
    assert hashed.startswith("$argon2") and PASSWORD not in hashed
    assert users.PASSWORDS.verify(PASSWORD, hashed)
    assert not users.PASSWORDS.verify("wrong " + PASSWORD, hashed)


def test_create_user_and_authenticate(app):
    """A new account signs in with its password only; emails compare in any case."""
    with app.app_context():
        user = users.create_user("Ada@Example.com ", PASSWORD)
        assert user.email == "ada@example.com" and user.password_hash.startswith("$argon2")
        assert users.authenticate("ADA@example.com", PASSWORD).id == user.id
        assert users.authenticate("ada@example.com", "not the password") is None
        assert users.authenticate("nobody@example.com", PASSWORD) is None


def test_bcrypt_hash_is_upgraded_on_login(app):
    """An account with an old bcrypt hash signs in, and its hash becomes argon2."""
    with app.app_context():
        db = app.extensions["sieve"].db
        user = db.create_user("old@example.com", bcrypt.hash(PASSWORD))
        assert db.get_user(user.id).password_hash.startswith("$2")
        assert users.authenticate("old@example.com", PASSWORD).id == user.id
        upgraded = db.get_user(user.id).password_hash
        assert upgraded.startswith("$argon2")
        assert users.authenticate("old@example.com", PASSWORD).password_hash == upgraded


def test_register_logs_in_and_logout_ends_the_session(web_client, auth):
    """Registering signs the person in; logging out signs them out."""
    response = auth.register()
    assert response.status_code == 302 and response.headers["Location"] == "/"
    assert "ada@example.com" in web_client.get("/").get_data(as_text=True)
    assert auth.logout().status_code == 302
    assert web_client.get("/").headers["Location"].startswith("/login")


@pytest.mark.parametrize(("email", "password", "confirm", "message"), [
    ("ada@example.com", "short", None, "at least 10 characters"),
    ("ada@example.com", "password123", None, "first ones attackers try"),
    ("ada@example.com", "aaaaaaaaaaaa", None, "first ones attackers try"),
    ("ada@example.com", "ada-is-my-password", None, "must not contain your email"),
    ("ada@example.com", PASSWORD, "something else", "The two passwords differ"),
    ("not-an-email", PASSWORD, None, "not an email address"),
])
def test_register_refuses_bad_input(auth, email, password, confirm, message):
    """Weak passwords, mismatched confirmations and bad emails get a clear message."""
    response = auth.register(email, password, confirm)
    assert response.status_code == 400
    assert message in response.get_data(as_text=True)


def test_register_duplicate_email(web_client, auth):
    """A second account with the same email (in any case) is refused with a message."""
    auth.register()
    auth.logout()
    response = auth.register("ADA@example.com")
    assert response.status_code == 400
    assert "exists already" in response.get_data(as_text=True)


def test_login_and_wrong_password(web_client, auth):
    """The right password signs in (to where the person was going); a wrong one does not."""
    auth.register()
    auth.logout()
    response = auth.login(password="wrong password!")
    assert response.status_code == 401
    assert "Wrong email or password." in response.get_data(as_text=True)
    response = web_client.post("/login?next=/history", data={
        "csrf_token": auth.token("/login"), "email": "ada@example.com", "password": PASSWORD})
    assert response.headers["Location"] == "/history"


def test_login_never_redirects_to_another_site(web_client, auth):
    """`next` may only name a path on this site."""
    auth.register()
    auth.logout()
    response = web_client.post("/login?next=//evil.example/", data={
        "csrf_token": auth.token("/login"), "email": "ada@example.com", "password": PASSWORD})
    assert response.headers["Location"] == "/"


@pytest.mark.parametrize("token", [None, "forged-token"])
def test_forms_without_a_valid_csrf_token_are_refused(web_client, auth, token):
    """Every form needs the session's CSRF token."""
    data = {"email": "ada@example.com", "password": PASSWORD, "confirm": PASSWORD}
    if token:
        data["csrf_token"] = token
    response = web_client.post("/register", data=data)
    assert response.status_code == 400
    assert "The form expired" in response.get_data(as_text=True)
    auth.register()
    response = web_client.post("/logout", data={})
    assert response.status_code == 400


def test_repeated_failed_logins_are_locked_out(app, web_client, auth):
    """After LOGIN_MAX_FAILURES wrong passwords, even the right one waits, with a message."""
    auth.register()
    auth.logout()
    for _ in range(app.config["LOGIN_MAX_FAILURES"] - 1):
        assert auth.login(password="wrong password!").status_code == 401
    response = auth.login(password="wrong password!")
    assert response.status_code == 429 and "Retry-After" in response.headers
    assert "Too many failed logins" in response.get_data(as_text=True)
    response = auth.login()
    assert response.status_code == 429
    app.extensions["sieve"].events.redis.flushall()  # the lockout has run out
    assert auth.login().status_code == 302


def test_create_user_command(runner, app):
    """`flask create-user` makes an account, refusing weak passwords."""
    result = runner.invoke(args=["create-user", "root@example.com", "--admin",
                                 "--password", PASSWORD])
    assert result.exit_code == 0 and "(admin)" in result.output
    with app.app_context():
        assert users.authenticate("root@example.com", PASSWORD).is_admin
    result = runner.invoke(args=["create-user", "x@example.com", "--password", "short"])
    assert result.exit_code != 0 and "at least 10" in result.output
