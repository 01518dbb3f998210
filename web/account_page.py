"""The account page: the user's API tokens, made and revoked here (shown once); a new
password; logging out everywhere."""

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_wtf import FlaskForm
from wtforms import BooleanField, PasswordField, StringField, SubmitField
from wtforms.validators import DataRequired, EqualTo, Length

from sieve.database import LARGEST_INTEGER
from web import throttle, users
from web.api.tokens import PREDICT, TRAIN, create_token, revoke_token
from web.services import services
from web.users import current_user, login_required

bp = Blueprint("account", __name__)


class TokenForm(FlaskForm):
    """A new API token: a name to recognise it by, and what it may do."""

    name = StringField("Name", validators=[DataRequired(), Length(max=100)])
    predict = BooleanField("Submit and read predictions", default=True)
    train = BooleanField("Submit training runs and promote models (administrators)")
    submit = SubmitField("Create token")


class RevokeForm(FlaskForm):
    """Revoke one token (the form carries only the CSRF token)."""


class PasswordForm(FlaskForm):
    """A new password, given with the current one."""

    current = PasswordField("Current password", validators=[DataRequired()])
    password = PasswordField("New password", validators=[DataRequired()])
    confirm = PasswordField("Repeat the new password", validators=[
        DataRequired(), EqualTo("password", message="The two passwords differ.")])
    change = SubmitField("Change password")


class EverywhereForm(FlaskForm):
    """Log out on every device (the form carries only the CSRF token)."""


@bp.route("/account", methods=("GET", "POST"))
@login_required
def account():
    """List the tokens; make a new one and show it once."""
    user = current_user()
    form = TokenForm()
    new_token = new_secret = None
    if form.validate_on_submit():
        scopes = [scope for scope, wanted in ((PREDICT, form.predict.data),
                                              (TRAIN, form.train.data)) if wanted]
        if TRAIN in scopes and not user.is_admin:
            form.train.errors = ["Only administrators may have tokens that train."]
        elif not scopes:
            form.predict.errors = ["Choose at least one thing the token may do."]
        else:
            new_token, record = create_token(user.id, form.name.data.strip(), scopes)
            new_secret = record.webhook_secret
    return _page(form, new_token=new_token, new_secret=new_secret)


def _page(form: TokenForm, password_form: PasswordForm | None = None, status: int = 200,
          new_token: str | None = None, new_secret: str | None = None):
    """The account page (never cached: it may show a new token and its webhook secret)."""
    tokens = services().db.api_tokens(current_user().id)
    return render_template("account.html", form=form, tokens=tokens, new_token=new_token,
                           new_secret=new_secret, revoke_form=RevokeForm(),
                           everywhere_form=EverywhereForm(),
                           password_form=password_form or PasswordForm()), status


@bp.post("/account/password")
@login_required
def password():
    """Change the password; every other session of the account ends."""
    user, form = current_user(), PasswordForm()
    address = request.remote_addr or "unknown"
    if form.validate_on_submit():
        # Wrong current passwords count as failed logins: a borrowed session cannot
        # guess its way to the account.
        wait = throttle.locked_for(user.email, address)
        if wait:
            form.current.errors.append(f"Too many failed attempts. Wait {wait} seconds.")
        elif users.authenticate(user.email, form.current.data) is None:
            throttle.failed(user.email, address)
            form.current.errors.append("That is not your current password.")
        else:
            try:
                users.change_password(user, form.password.data)
            except users.WeakPassword as exc:
                form.password.errors.append(str(exc))
            else:
                flash("Password changed: your other sessions have ended.", "success")
                return redirect(url_for("account.account"))
    return _page(TokenForm(formdata=None), form, 400)


@bp.post("/account/logout-everywhere")
@login_required
def logout_everywhere():
    """End every session of the account, this one included."""
    if not EverywhereForm().validate_on_submit():
        abort(400, "The form expired: reload the page and try again.")
    users.logout()
    flash("You are logged out on every device.", "info")
    return redirect(url_for("auth.login"))


@bp.post(f"/account/tokens/<int(max={LARGEST_INTEGER}):token_id>/revoke")
@login_required
def revoke(token_id: int):
    """Revoke one of the user's tokens; someone else's is a 404."""
    if not RevokeForm(request.form).validate():
        abort(400, "The form expired: reload the page and try again.")
    if not revoke_token(current_user().id, token_id):
        abort(404, "No such token among yours (or it is already revoked).")
    flash("Token revoked: programs using it are refused from now on.")
    return redirect(url_for("account.account"))
