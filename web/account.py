"""The account page: the user's API tokens, made and revoked here (shown once)."""

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_wtf import FlaskForm
from wtforms import BooleanField, StringField, SubmitField
from wtforms.validators import DataRequired, Length

from web.accounts import current_user, login_required
from web.api.tokens import PREDICT, TRAIN, create_token, revoke_token
from web.services import services

bp = Blueprint("account", __name__)


class TokenForm(FlaskForm):
    """A new API token: a name to recognise it by, and what it may do."""

    name = StringField("Name", validators=[DataRequired(), Length(max=100)])
    predict = BooleanField("Submit and read predictions", default=True)
    train = BooleanField("Submit training runs and promote models (administrators)")
    submit = SubmitField("Create token")


class RevokeForm(FlaskForm):
    """Revoke one token (the form carries only the CSRF token)."""


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
    tokens = services().db.api_tokens(user.id)
    return render_template("account.html", form=form, tokens=tokens, new_token=new_token,
                           new_secret=new_secret,
                           revoke_form=RevokeForm())


@bp.post("/account/tokens/<int:token_id>/revoke")
@login_required
def revoke(token_id: int):
    """Revoke one of the user's tokens; someone else's is a 404."""
    if not RevokeForm(request.form).validate():
        abort(400, "The form expired: reload the page and try again.")
    if not revoke_token(current_user().id, token_id):
        abort(404, "No such token among yours (or it is already revoked).")
    flash("Token revoked: programs using it are refused from now on.")
    return redirect(url_for("account.account"))
