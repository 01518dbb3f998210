"""Images for the tests, encoded as an upload would be."""

import io

import numpy as np
from PIL import Image, ImageDraw


def png(array: np.ndarray) -> bytes:
    """A uint8 array as PNG bytes."""
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "PNG")
    return buffer.getvalue()


def noise(seed: int = 1, size: int = 28) -> bytes:
    """Uniform noise: nothing like clothing."""
    return png(np.random.default_rng(seed).integers(0, 256, (size, size), dtype=np.uint8))


def blank_page() -> bytes:
    """A white page."""
    return png(np.full((64, 64), 255, np.uint8))


def text(words: str = "Hello, filter!") -> bytes:
    """Black words on white paper."""
    image = Image.new("L", (200, 60), 255)
    ImageDraw.Draw(image).text((10, 20), words, fill=0)
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def truncated_png(array: np.ndarray) -> bytes:
    """A PNG cut off halfway: what a broken upload looks like."""
    data = png(array)
    return data[: len(data) // 2]


def large_png(array: np.ndarray, side: int) -> bytes:
    """The image scaled up to side x side pixels (a big upload that compresses well)."""
    image = Image.fromarray(array).resize((side, side), Image.NEAREST)
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()
