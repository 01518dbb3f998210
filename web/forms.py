"""The HTML forms; every one carries a CSRF token (Flask-WTF)."""

from flask_wtf import FlaskForm
from wtforms import EmailField, MultipleFileField, PasswordField, RadioField, SubmitField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, EqualTo, Length

from sieve.models import CLASSIFY_ONLY, FILTER_THEN_CLASSIFY

PIPELINE_CHOICES = [SelectChoice(FILTER_THEN_CLASSIFY, "Filter, then classifier"),
                    SelectChoice(CLASSIFY_ONLY, "Classifier only")]


class RegisterForm(FlaskForm):
    """A new account."""

    email = EmailField("Email", validators=[DataRequired(), Length(max=254)])
    password = PasswordField("Password", validators=[DataRequired()])
    confirm = PasswordField("Repeat the password", validators=[
        DataRequired(), EqualTo("password", message="The two passwords differ.")])
    submit = SubmitField("Create account")


class LoginForm(FlaskForm):
    """Sign in."""

    email = EmailField("Email", validators=[DataRequired(), Length(max=254)])
    password = PasswordField("Password", validators=[DataRequired()])
    submit = SubmitField("Log in")


class UploadForm(FlaskForm):
    """One or several images, and the pipeline they go through."""

    images = MultipleFileField("Images")
    pipeline = RadioField("Pipeline", choices=PIPELINE_CHOICES, default=FILTER_THEN_CLASSIFY)
    submit = SubmitField("Classify")


class ClassifyAnywayForm(FlaskForm):
    """Send a rejected prediction's image again, to the classifier alone."""

    submit = SubmitField("Classify it anyway")


class SampleForm(FlaskForm):
    """Try one of the sample images."""

    pipeline = RadioField("Pipeline", choices=PIPELINE_CHOICES, default=FILTER_THEN_CLASSIFY)
