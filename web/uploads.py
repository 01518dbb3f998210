"""Checking uploads for what they are, not what they are called, and sending them on.

Every file is decoded with the workers' own decoder (`training.images`, no torch): an
empty file, a file that is not an image, a truncated one or a decompression bomb is
refused with a message before anything is stored.
"""

from dataclasses import dataclass

from flask import g
from PIL import Image

from sieve.models import Prediction
from training.images import ImageError, load_image
from web.services import services


@dataclass
class Upload:
    """A checked image, ready to store."""

    filename: str
    data: bytes
    content_type: str


class UploadError(ValueError):
    """A file that will not be sent to the models; the message names it and says why."""


def check(filename: str, data: bytes) -> Upload:
    """An Upload when the bytes decode as an image; UploadError otherwise."""
    name = filename or "the upload"
    try:
        image = load_image(data)
    except ImageError as exc:
        raise UploadError(f"{name}: {exc}.") from exc
    content_type = Image.MIME.get(image.format or "", "application/octet-stream")
    return Upload(filename=filename, data=data, content_type=content_type)


def send(uploads: list[Upload], pipeline: str, user_id: int) -> list[Prediction]:
    """Store the uploads and their predictions, then enqueue them together
    (QueueUnavailable if not)."""
    return services().submitter.submit_many(
        [(u.data, u.content_type, u.filename) for u in uploads], pipeline, user_id=user_id,
        request_id=g.get("request_id"))
