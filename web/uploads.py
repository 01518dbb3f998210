"""The one upload check of the web tier (pages and API), and sending uploads on.

Each file is checked by what it is, not what it is called, with the workers' own reader
(`sieve.images`, no torch), from its header only: an empty file, a file that is not
an image, a damaged PNG or one above the pixel bound is refused with a message before
anything is stored. No pixels are decoded here, so that no request holds up the event
loop of a gevent worker; the serving workers decode (damage a header cannot show fails
the prediction there, with its reason). A request's images together may hold at most
MAX_PIXELS_PER_REQUEST pixels.
"""

from dataclasses import dataclass

from flask import current_app, g

from sieve.images import ImageError, ImageTooLarge, NotAnImage, inspect_image
from sieve.models import Prediction
from web.services import services
from workers import client


@dataclass(frozen=True)
class Upload:
    """One checked image: its bytes, its real media type, the client's file name and
    its pixels."""

    data: bytes
    content_type: str
    filename: str
    pixels: int = 0


class UploadError(ValueError):
    """A file that will not be sent to the models; the message names it and says why,
    `status` is the HTTP status that says so (413, 415 or 422)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def check(filename: str, data: bytes) -> Upload:
    """An Upload when the bytes are an image within the bounds; UploadError otherwise."""
    name = filename or "the upload"
    try:
        info = inspect_image(data)
    except NotAnImage as exc:
        raise UploadError(415, f"{name}: {exc}.") from exc
    except ImageTooLarge as exc:
        raise UploadError(413, f"{name}: {exc}.") from exc
    except ImageError as exc:
        raise UploadError(422, f"{name}: {exc}.") from exc
    return Upload(data=data, content_type=info.content_type, filename=filename,
                  pixels=info.pixels)


def check_total(uploads: list[Upload]) -> None:
    """UploadError (413) when the images together hold more pixels than a request may."""
    most, total = current_app.config["MAX_PIXELS_PER_REQUEST"], sum(u.pixels for u in uploads)
    if total > most:
        raise UploadError(413, f"the images hold {total:,} pixels in all; at most "
                          f"{most:,} are accepted in one request: send fewer at a time.")


def send(uploads: list[Upload], pipeline: str, user_id: int) -> list[Prediction]:
    """Store the uploads and their predictions, then enqueue them together
    (QueueUnavailable if not)."""
    return client.submit_many(services().celery, services().db,
                              [(u.data, u.content_type, u.filename) for u in uploads],
                              pipeline, user_id=user_id, request_id=g.get("request_id"))
