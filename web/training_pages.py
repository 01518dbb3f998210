"""Pages for administrators: submit training runs and follow them; the models, their
cards and plots, and promoting or rolling back a version."""

import functools

from flask import (
    Blueprint,
    Response,
    abort,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_wtf import FlaskForm
from wtforms import BooleanField, IntegerField, SelectField, StringField, SubmitField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import NumberRange, Optional

from sieve.config import ARCHS
from sieve.models import QUEUED
from sieve.registry import list_models, promote, rollback, show
from sieve.store import NAME_PATTERN, PRODUCTION, StoreError
from web.api.models import store, with_workers
from web.services import services
from web.users import current_user, login_required
from workers.client import QueueUnavailable
from workers.runs import (
    InvalidParameters,
    cancel_run,
    get_run,
    list_runs,
    no_worker_warning,
    submit_run,
)

bp = Blueprint("training", __name__)
PLOTS = ("curves.png", "confusion.png", "scores.png")


class RunForm(FlaskForm):
    """A training run's parameters; empty fields take the training CLI's defaults."""

    model = SelectField("Model", choices=[SelectChoice("classifier", "classifier"),
                                          SelectChoice("filter", "filter")],
                        default="classifier")
    epochs = IntegerField("Epochs", validators=[Optional(), NumberRange(1, 1000)])
    optimizer = SelectField("Optimizer", default="", choices=[
        SelectChoice("", "default"), SelectChoice("sgd", "sgd"), SelectChoice("adam", "adam"),
        SelectChoice("adamw", "adamw")])
    lr = StringField("Learning rate", validators=[Optional()])
    seed = IntegerField("Seed", validators=[Optional(), NumberRange(0, 2**32 - 1)])
    subset = IntegerField("Training images (subset)", validators=[Optional(), NumberRange(1)])
    data_dir = StringField("Data folder on the training worker", validators=[Optional()])
    arch = SelectField("Network", default="", choices=[SelectChoice("", "default (cnn)")] + [
        SelectChoice(name, name) for name in ARCHS])
    weights = StringField("Pretrained weights (DEFAULT or store:<model>/<version>)",
                          validators=[Optional()])
    freeze_backbone = BooleanField("Train the head only (frozen backbone)")
    image_size = IntegerField("Image size (image folders)",
                              validators=[Optional(), NumberRange(8, 1024)])
    submit = SubmitField("Start training")


class ActionForm(FlaskForm):
    """A button that changes something (carries the CSRF token)."""


def admin_required(view):
    """Signed in and an administrator; anyone else gets a 403 page."""
    @functools.wraps(view)
    @login_required
    def wrapped(**kwargs):
        if not current_user().is_admin:
            abort(403, "Training and promoting models are for administrators.")
        return view(**kwargs)
    return wrapped


def _stale_after() -> float:
    return services().settings.training_stale_after


@bp.route("/training", methods=("GET", "POST"))
@admin_required
def runs():
    """The runs, newest first, and the form for a new one."""
    form = RunForm()
    if form.validate_on_submit():
        params = {k: v for k, v in form.data.items()
                  if k not in ("submit", "csrf_token") and v not in (None, "")}
        try:
            run = submit_run(services().celery, services().db, params, current_user().id)
        except InvalidParameters as exc:
            flash(f"Not started: {exc}")
        except QueueUnavailable:
            abort(503, "The task queue did not answer; try again in a minute.")
        else:
            return redirect(url_for("training.run", run_id=run.id))
    return render_template("training/runs.html", form=form,
                           runs=list_runs(services().db, stale_after=_stale_after()),
                           warning=no_worker_warning(services().celery))


@bp.get("/training/<run_id>")
@admin_required
def run(run_id: str):
    """One run: live progress, the loss curve, the log, a cancel button."""
    found = get_run(services().db, run_id, stale_after=_stale_after())
    if found is None:
        abort(404, f"No training run {run_id}.")
    warning = no_worker_warning(services().celery) if found.state == QUEUED else None
    return render_template("training/run.html", run=found, data=found.to_dict(with_log=True),
                           form=ActionForm(), warning=warning)


@bp.post("/training/<run_id>/cancel")
@admin_required
def cancel(run_id: str):
    """Ask the run to stop (it stops within one training step)."""
    if not ActionForm().validate_on_submit():
        abort(400, "The form expired: reload the page and try again.")
    if cancel_run(services().celery, services().db, run_id) is None:
        abort(404, f"No training run {run_id}.")
    return redirect(url_for("training.run", run_id=run_id))


@bp.get("/models")
@login_required
def models():
    """Every model, its versions, metrics and aliases."""
    return render_template("training/models.html", models=with_workers(list_models(store())),
                           form=ActionForm(), admin=current_user().is_admin)


def _checked(name: str, version: str | None = None) -> dict:
    """The card of a version, or a 404."""
    if not NAME_PATTERN.match(name):
        abort(404, f"No model {name}.")
    try:
        return show(name, version, store())
    except StoreError as exc:
        abort(404, str(exc))


@bp.get("/models/<name>/<version>")
@login_required
def card(name: str, version: str):
    """A version's model card with its plots."""
    shown = _checked(name, version)
    plots = [p for p in PLOTS if _has_plot(name, version, p)]
    return render_template("training/card.html", name=name, version=version, card=shown,
                           plots=plots)


def _has_plot(name: str, version: str, plot: str) -> bool:
    """Whether the version carries that plot (cards of older versions may lack some)."""
    try:
        store().read_file(name, version, plot)
    except (StoreError, FileNotFoundError):
        return False
    return True


@bp.get("/models/<name>/<version>/<plot>")
@login_required
def plot(name: str, version: str, plot: str):
    """One of the version's plots (PNG), read from the model store."""
    if plot not in PLOTS:
        abort(404, f"No plot {plot}.")
    _checked(name, version)
    try:
        data = store().read_file(name, version, plot)
    except (StoreError, FileNotFoundError):
        abort(404, f"{name} {version} has no {plot}.")
    return Response(data, content_type="image/png")


@bp.post("/models/<name>/promote")
@admin_required
def promote_version(name: str):
    """Point an alias (production by default) at a version."""
    version = request.form.get("version", "")
    _checked(name, version)
    if not ActionForm().validate_on_submit():
        abort(400, "The form expired: reload the page and try again.")
    alias = request.form.get("alias") or PRODUCTION
    promote(name, version, alias, store(), by=current_user().email)
    flash(f"{name} {version} is now {alias}."
          + (" Serving workers switch as soon as they have loaded it: the table of workers "
             "shows which version each one serves." if alias == PRODUCTION else ""))
    return redirect(url_for("training.models"))


@bp.post("/models/<name>/rollback")
@admin_required
def rollback_alias(name: str):
    """Return an alias to the version it pointed at before."""
    _checked(name)
    if not ActionForm().validate_on_submit():
        abort(400, "The form expired: reload the page and try again.")
    alias = request.form.get("alias") or PRODUCTION
    try:
        entry = rollback(name, alias, store(), by=current_user().email)
    except StoreError as exc:
        flash(f"Not rolled back: {exc}")
    else:
        flash(f"{name} {alias} rolled back to {entry.get('version', 'its previous version')}.")
    return redirect(url_for("training.models"))
