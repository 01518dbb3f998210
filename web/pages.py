"""The pages behind a login: upload, one prediction, history, and the sample gallery."""

import math
from pathlib import Path

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)

from sieve.database import LARGEST_INTEGER
from sieve.models import CLASSIFY_ONLY, describe
from web.forms import ClassifyAnywayForm, SampleForm, UploadForm
from web.services import services
from web.uploads import UploadError, check, check_total, send
from web.users import current_user, login_required

bp = Blueprint("pages", __name__)

SAMPLES = Path(__file__).parent / "static" / "samples"


def sample_names() -> list[str]:
    """The sample images offered on the upload page."""
    return sorted(path.name for path in SAMPLES.glob("*.png"))


def _index(form: UploadForm, errors: list[str] = (), status: int = 200):
    """The upload page, with the errors of the last attempt."""
    return render_template("index.html", form=form, sample_form=SampleForm(),
                           samples=sample_names(), errors=errors), status


@bp.route("/", methods=("GET", "POST"))
@login_required
def index():
    """Upload one or several images; each becomes a prediction."""
    form = UploadForm()
    if not form.validate_on_submit():
        return _index(form, status=400 if form.is_submitted() else 200)
    files = [f for f in request.files.getlist(form.images.name) if f and f.filename]
    if not files:
        return _index(form, ["Choose at least one image."], 400)
    limit = current_app.config["MAX_FILES_PER_UPLOAD"]
    if len(files) > limit:
        return _index(form, [f"At most {limit} images at a time."], 400)
    uploads, errors = [], []
    for file in files:
        try:
            uploads.append(check(file.filename, file.read()))
        except UploadError as exc:
            errors.append(str(exc))
    if not errors:
        try:
            check_total(uploads)
        except UploadError as exc:
            errors.append(str(exc))
    if errors:
        return _index(form, errors, 400)
    predictions = send(uploads, form.pipeline.data, current_user().id)
    if len(predictions) == 1:
        return redirect(url_for("pages.prediction", prediction_id=predictions[0].id))
    flash(f"{len(predictions)} images sent to the models.", "success")
    return redirect(url_for("pages.history"))


@bp.route("/samples/<name>", methods=("POST",))
@login_required
def sample(name: str):
    """Send one of the sample images, as if it had been uploaded."""
    form = SampleForm()
    if name not in sample_names() or not form.validate_on_submit():
        abort(404, "There is no such sample image.")
    upload = check(name, (SAMPLES / name).read_bytes())
    prediction = send([upload], form.pipeline.data, current_user().id)[0]
    return redirect(url_for("pages.prediction", prediction_id=prediction.id))


def own_prediction(prediction_id: str):
    """The signed-in user's prediction; 404 for anyone else's (its existence stays hidden)."""
    prediction = services().db.user_prediction(prediction_id, current_user().id)
    if prediction is None:
        abort(404, "There is no prediction with this id among yours.")
    return prediction


@bp.route("/predictions/<prediction_id>")
@login_required
def prediction(prediction_id: str):
    """One prediction: its state (live), and its outcome once there is one."""
    return render_template("prediction.html", p=own_prediction(prediction_id),
                           anyway_form=ClassifyAnywayForm())


@bp.route("/predictions/<prediction_id>/classify-anyway", methods=("POST",))
@login_required
def classify_anyway(prediction_id: str):
    """Send a rejected prediction's image again, through the classifier alone."""
    rejected = own_prediction(prediction_id)
    if not ClassifyAnywayForm().validate_on_submit():
        abort(400, "The form was not sent from the prediction's page.")
    if rejected.state != "rejected":
        abort(409, "Only a prediction the filter rejected can be classified anyway.")
    found = services().db.user_image(prediction_id, current_user().id)
    if found is None:
        abort(404, "The image of this prediction is no longer stored.")
    upload = check(rejected.filename or "the image", found[0])
    prediction = send([upload], CLASSIFY_ONLY, current_user().id)[0]
    return redirect(url_for("pages.prediction", prediction_id=prediction.id))


@bp.route("/predictions/<prediction_id>/status")
@login_required
def status(prediction_id: str):
    """The prediction as JSON, for the page's polling fallback."""
    return jsonify(describe(own_prediction(prediction_id)))


@bp.route("/predictions/<prediction_id>/image")
@login_required
def image(prediction_id: str):
    """The uploaded image, to its owner only."""
    found = services().db.user_image(prediction_id, current_user().id)
    if found is None:
        abort(404, "There is no prediction with this id among yours.")
    data, content_type = found
    return data, 200, {"Content-Type": content_type, "X-Content-Type-Options": "nosniff",
                       "Cache-Control": "private, max-age=3600",
                       "Content-Security-Policy": "default-src 'none'"}


@bp.route("/history")
@login_required
def history():
    """The user's predictions, newest first, a page at a time."""
    page = request.args.get("page", 1, type=int)
    per_page = current_app.config["HISTORY_PAGE_SIZE"]
    if page < 1:
        abort(404, "Pages are numbered from 1.")
    if (page - 1) * per_page > LARGEST_INTEGER:
        abort(400, f"There is no page {page}: that is beyond any history.")
    predictions, total = services().db.prediction_page(current_user().id, page, per_page)
    pages = max(1, math.ceil(total / per_page))
    if page > pages:
        abort(404, f"There are only {pages} pages of history.")
    return render_template("history.html", predictions=predictions, page=page, pages=pages,
                           total=total)
