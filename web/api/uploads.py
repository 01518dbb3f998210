"""Reading the images of a submission: how many, how large, and whether they are images.

Each is checked by the web tier's one upload check (`web.uploads.check`, by content,
from the header), never by file name or the declared type: 413 (too large), 415 (not an
image) or 422 (empty, damaged). All images are checked before any is stored.
"""

import hashlib

from flask import current_app, request

from sieve.models import FILTER_THEN_CLASSIFY, PIPELINES
from web.api.errors import fail
from web.uploads import Upload, UploadError, check, check_total

__all__ = ["fingerprint", "read_uploads"]


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
        try:
            uploads.append(check(file.filename or "", data))
        except UploadError as exc:
            fail(exc.status, str(exc))
    try:
        check_total(uploads)
    except UploadError as exc:
        fail(exc.status, str(exc))
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
