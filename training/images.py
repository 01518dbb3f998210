"""Decoding an upload into a PIL image, with the checks every entry point shares: empty
files, unknown formats, truncated data and decompression bombs. No torch here: the web
tier checks uploads with this module before it stores them.
"""

import io
import os
import warnings

from PIL import Image, UnidentifiedImageError

# Refuse images above this many pixels before decoding them (decompression bombs).
MAX_PIXELS = 40_000_000


class ImageError(ValueError):
    """Bytes or a file that cannot be read as an image."""


def load_image(source) -> Image.Image:
    """Decode bytes, a path or a PIL image; raise ImageError when it is not a readable image."""
    if isinstance(source, Image.Image):
        return source
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            if isinstance(source, (bytes, bytearray, memoryview)):
                if not len(source):
                    raise ImageError("the file is empty")
                image = Image.open(io.BytesIO(source))
            elif isinstance(source, (str, os.PathLike)):
                image = Image.open(source)
            else:
                raise TypeError(f"cannot read an image from {type(source).__name__}")
            if image.width * image.height > MAX_PIXELS:
                raise ImageError(
                    f"the image is {image.width}x{image.height} pixels; "
                    f"at most {MAX_PIXELS:,} pixels are accepted"
                )
            image.load()
    except ImageError:
        raise
    except UnidentifiedImageError as exc:
        raise ImageError("not an image in a known format (PNG, JPEG, GIF, BMP, WebP, ...)") from exc
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(f"the image is too large to decode safely: {exc}") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        # Truncated or damaged files surface as OSError/SyntaxError from the decoders.
        raise ImageError(f"the image is damaged or truncated: {exc}") from exc
    return image
