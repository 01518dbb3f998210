"""Reading the images of a submission: how many, how large, and whether they are images.

Checked by content with the decoder the workers use (`training.images.load_image`),
never by file name or the declared type. All images are checked before any is stored.
"""

import hashlib
from dataclasses import dataclass

from flask import current_app, request
from PIL import Image, UnidentifiedImageError

from sieve.models import FILTER_THEN_CLASSIFY, PIPELINES
from training.images import ImageError, load_image
from web.api.errors import fail

BOMBS = (Image.DecompressionBombError, Image.DecompressionBombWarning)


@dataclass(frozen=True)
class Upload:
    """One checked image: its bytes, its real media type and the client's file name."""

    data: bytes
    content_type: str
    filename: str


def _check(data: bytes, filename: str) -> Upload:
    """An Upload, or 413 (too large), 415 (not an image) or 422 (empty, damaged)."""
    if not data:
        fail(422, f"{filename or 'the image'} is empty")
    try:
        image = load_image(data)
    except ImageError as exc:
        cause = exc.__cause__
        if isinstance(cause, UnidentifiedImageError):
            fail(415, f"{filename or 'the file'}: {exc}")
        if isinstance(cause, BOMBS) or cause is None:  # no cause: over the pixel bound
            fail(413, f"{filename or 'the image'}: {exc}")
        fail(422, f"{filename or 'the image'}: {exc}")
    content_type = Image.MIME.get(image.format or "", "application/octet-stream")
    return Upload(data, content_type, filename)


def read_uploads() -> tuple[list[Upload], str]:
    """The request's images (multipart field `image`) and the chosen pipeline."""
    if request.mimetype != "multipart/form-data":
        fail(415, "send the images as multipart/form-data, in fields named `image`")
    most, largest = (current_app.config["SIEVE_MAX_IMAGES"],
                     current_app.config["SIEVE_MAX_IMAGE_BYTES"])
    if (request.content_length or 0) > most * largest + 65536:
        fail(413, f"the request is larger than {most} images of {largest} bytes")
    files = request.files.getlist("image")
    if not files:
        fail(400, "no image: send one or more files in the multipart field `image`")
    if len(files) > most:
        fail(413, f"{len(files)} images in one request: at most {most} are accepted")
    pipeline = request.form.get("pipeline", FILTER_THEN_CLASSIFY)
    if pipeline not in PIPELINES:
        fail(422, f"unknown pipeline {pipeline!r}: choose one of {', '.join(PIPELINES)}")
    uploads = []
    for file in files:
        data = file.stream.read(largest + 1)
        if len(data) > largest:
            fail(413, f"{file.filename or 'an image'} is larger than {largest} bytes")
        uploads.append(_check(data, file.filename or ""))
    return uploads, pipeline


def fingerprint(uploads: list[Upload], pipeline: str, webhook: dict | None = None) -> str:
    """What identifies a submission's content, to tell a retry from a different request."""
    digest = hashlib.sha256(pipeline.encode())
    if webhook is not None:
        digest.update(f"\0{webhook['url']}\0{webhook['events']}".encode())
    for upload in uploads:
        digest.update(b"\0" + upload.filename.encode() + b"\0")
        digest.update(hashlib.sha256(upload.data).digest())
    return digest.hexdigest()
