"""Reading uploads as images, with the checks every entry point shares: empty files,
unknown formats, truncated data and decompression bombs. No torch here: the web tier
checks uploads with this module before it stores them.

Two steps, so that no request decodes pixels:
- `inspect_image` reads the header only (format, size, mode, frame count) and checks the
  file's structure where the format allows it without decoding (PNG chunk checksums);
  the web tier calls it, and it costs microseconds whatever the image's size.
- `load_image` decodes, in the workers: with `fit`, JPEGs are decoded at a reduced scale
  (`Image.draft`) and other images are reduced by an integer factor right after
  decoding (`Image.reduce`), so that only one full-size image is in memory at a time.
  `release_memory` hands the memory of a large batch back to the system.
"""

import ctypes
import ctypes.util
import io
import os
import warnings
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

# Refuse images above this many pixels before decoding them (decompression bombs).
MAX_PIXELS = 40_000_000
KNOWN_FORMATS = "PNG, JPEG, GIF, BMP, WebP, ..."


class ImageError(ValueError):
    """Bytes or a file that cannot be read as an image."""


class NotAnImage(ImageError):
    """The bytes are not an image in a format the decoder knows."""


class ImageTooLarge(ImageError):
    """The image holds more pixels than may be decoded."""


class DamagedImage(ImageError):
    """The image is truncated or damaged."""


@dataclass(frozen=True)
class ImageInfo:
    """What an image's header says."""

    format: str
    width: int
    height: int
    mode: str
    frames: int

    @property
    def pixels(self) -> int:
        """Pixels of the first frame, the one the models see."""
        return self.width * self.height

    @property
    def content_type(self) -> str:
        """The media type of the format."""
        return Image.MIME.get(self.format, "application/octet-stream")


def _open(source) -> Image.Image:
    """Open bytes or a path lazily (no pixels decoded) and check the pixel bound."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        if not len(source):
            raise ImageError("the file is empty")
        image = Image.open(io.BytesIO(source))
    elif isinstance(source, (str, os.PathLike)):
        image = Image.open(source)
    else:
        raise TypeError(f"cannot read an image from {type(source).__name__}")
    if image.width * image.height > MAX_PIXELS:
        raise ImageTooLarge(f"the image is {image.width}x{image.height} pixels; "
                            f"at most {MAX_PIXELS:,} pixels are accepted")
    return image


def _reading(action):
    """Run `action()`, turning the decoder's errors into ImageError subclasses."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return action()
    except ImageError:
        raise
    except UnidentifiedImageError as exc:
        raise NotAnImage(f"not an image in a known format ({KNOWN_FORMATS})") from exc
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLarge(f"the image is too large to decode safely: {exc}") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        # Truncated or damaged files surface as OSError/SyntaxError from the decoders.
        raise DamagedImage(f"the image is damaged or truncated: {exc}") from exc


def inspect_image(source) -> ImageInfo:
    """The header of bytes or a file, checked without decoding the pixels."""

    def read() -> ImageInfo:
        image = _open(source)
        info = ImageInfo(format=image.format or "", width=image.width, height=image.height,
                         mode=image.mode, frames=getattr(image, "n_frames", 1))
        image.verify()  # structure and checksums where the format has them; no pixels
        return info

    return _reading(read)


def load_image(source, fit: int | None = None) -> Image.Image:
    """Decode bytes, a path or a PIL image; ImageError when it is not a readable image.
    With `fit`, the image may come out smaller, but never below `fit` pixels on its
    shorter side: decoded at a reduced scale (JPEG) or reduced right after decoding."""
    if isinstance(source, Image.Image):
        return source

    def read() -> Image.Image:
        image = _open(source)
        if fit:
            image.draft(image.mode, (fit, fit))  # JPEG: decode at 1/2, 1/4 or 1/8 scale
        image.load()
        factor = min(image.size) // fit if fit else 1
        return image.reduce(factor) if factor >= 2 else image

    return _reading(read)


def release_memory() -> None:
    """Give freed memory back to the system (glibc keeps large freed blocks otherwise);
    a no-op where the C library has no malloc_trim."""
    name = ctypes.util.find_library("c")
    libc = ctypes.CDLL(name) if name else None
    if libc is not None and hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)
