"""The one preprocessing path shared by training and serving: any image in, model input out.

Training data and uploads go through the same two steps:

1. `to_canonical` turns a decoded image into the data set's own form, a uint8 array of
   shape (C, size, size). For the Fashion-MNIST preset that means grayscale, a light
   object on a black background (levelled even where the light falls off across a
   photo), trimmed to the object and centred, with the longest side filling the frame
   (the steps the data set's authors used on product photos).
2. `to_tensor` scales and normalises a batch of canonical arrays into float tensors.

An image that is already in canonical form (the right size and mode, dark background)
passes through step 1 unchanged, so a data-set image gives the same tensor whether it
comes from the data files, a PNG upload or an RGB copy of that PNG.
"""

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
from PIL import Image, ImageOps

# Decoding lives in a module without torch, so that the web tier can check uploads with
# the very code the workers use.
from sieve.images import MAX_PIXELS, ImageError, load_image  # noqa: F401

# Images are decoded at no less than this many times the model's input size.
FIT_FACTOR = 4

# Pixels farther than this from the background count as the object when trimming
# (5% of the range, the threshold of the Fashion-MNIST paper).
TRIM_THRESHOLD = 13


@dataclass(frozen=True)
class Preprocessing:
    """How a decoded image becomes model input; stored in every model card."""

    mode: str = "L"
    size: int = 28
    invert_light_background: bool = True
    trim: bool = True
    mean: tuple[float, ...] = (0.2860,)
    std: tuple[float, ...] = (0.3530,)

    @property
    def channels(self) -> int:
        """Number of input channels of the model."""
        return 1 if self.mode == "L" else 3

    def to_dict(self) -> dict:
        """A JSON-ready description, the inverse of `from_dict`."""
        return {"name": "canonical", **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict) -> "Preprocessing":
        """Rebuild the preprocessing recorded in a model card."""
        fields = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        for key in ("mean", "std"):
            fields[key] = tuple(fields[key])
        return cls(**fields)


FASHION_MNIST = Preprocessing()


def folder_preprocessing(size: int = 64) -> Preprocessing:
    """RGB preset for image-folder data sets: photos resized and centre-cropped."""
    return Preprocessing(
        mode="RGB",
        size=size,
        invert_light_background=False,
        trim=False,
        mean=(0.485, 0.456, 0.406),
        std=(0.229, 0.224, 0.225),
    )


def _flatten(image: Image.Image, mode: str) -> Image.Image:
    """First frame, upright, transparency composited on white, converted to `mode`."""
    if getattr(image, "n_frames", 1) > 1:
        image.seek(0)
    image = ImageOps.exif_transpose(image)
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        array = np.asarray(image, dtype=np.float64)
        span = max(array.max() - array.min(), 1e-9)
        image = Image.fromarray(((array - array.min()) / span * 255).astype(np.uint8))
    if image.mode == "P" or image.mode in ("LA", "PA", "La"):
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "RGBa"):
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, image.convert("RGBA"))
    return image.convert(mode)


def _ring(array: np.ndarray) -> np.ndarray:
    """The outermost ring of pixels, as a flat array."""
    return np.concatenate([array[0], array[-1], array[1:-1, 0], array[1:-1, -1]])


def _background(array: np.ndarray) -> float:
    """The background level: the median of the outermost ring of pixels."""
    return float(np.median(_ring(array)))


def _background_plane(array: np.ndarray) -> np.ndarray:
    """The background level at every pixel of a light-object-on-dark image: a plane fitted
    to the outermost ring, so that light falling off across a picture is levelled too.

    The object can touch the border; its pixels lie above the background, so the fit is
    repeated without the ring pixels that stand clearly above the plane.
    """
    h, w = array.shape
    across, down = np.arange(w) / w, np.arange(h) / h
    values = _ring(array).astype(np.float64)
    xs = np.concatenate([across, across, np.zeros(h - 2), np.full(h - 2, across[-1])])
    ys = np.concatenate([np.zeros(w), np.full(w, down[-1]), down[1:-1], down[1:-1]])
    design = np.stack([np.ones_like(values), xs, ys], axis=1)
    keep = values <= np.median(values) + TRIM_THRESHOLD
    for _ in range(4):
        coef = np.linalg.lstsq(design[keep], values[keep], rcond=None)[0]
        residual = values - design @ coef
        spread = 1.4826 * np.median(np.abs(residual[keep]))
        keep = residual <= max(3 * spread, TRIM_THRESHOLD / 2)
    plane = coef[0] + coef[1] * across[None, :] + coef[2] * down[:, None]
    return np.clip(plane, 0, 254).astype(np.float32)


def _canonical_gray(image: Image.Image, prep: Preprocessing) -> np.ndarray:
    """Grayscale path: light object on dark, trimmed, longest side = size, centred."""
    array = np.asarray(image, dtype=np.uint8)
    background = _background(array)
    if prep.invert_light_background and background > 127.5:
        array = 255 - array
        background = 255 - background
    if array.shape == (prep.size, prep.size):
        return array[None].copy()
    # Level so that the background becomes black, as in the data set, and a garment's
    # brightest pixel keeps its level even where the light falls off.
    plane = _background_plane(array)
    if plane.max() > 0:
        levelled = (array.astype(np.float32) - plane) * (255.0 / (255.0 - plane))
        array = np.clip(np.rint(levelled), 0, 255).astype(np.uint8)
    array = _stretch(array)
    if not prep.trim:
        return _fit(Image.fromarray(array), prep.size)[None]
    return _frame(array, _object_box(array), prep.size)[None]


def _stretch(array: np.ndarray) -> np.ndarray:
    """Scale levels so that the object's brightest pixel is white, as in every data-set
    image (a faint object: a tinted garment on a coloured background, a blurred picture).
    A blank image (nothing above the trim threshold) stays as it is."""
    top = int(array.max())
    if top <= TRIM_THRESHOLD or top == 255:
        return array
    return np.clip(np.rint(array.astype(np.float32) * (255.0 / top)), 0, 255).astype(np.uint8)


def _object_box(array: np.ndarray) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of the pixels that stand out from the black background."""
    mask = array > TRIM_THRESHOLD
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0 or cols.size == 0:
        return 0, 0, array.shape[1], array.shape[0]
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def _frame(array: np.ndarray, box: tuple[int, int, int, int], size: int) -> np.ndarray:
    """Scale the object in `box` so that its longest side fills `size`, laid out as the data set.

    One resampling straight from the upload's pixels, with the object placed to a fraction
    of a pixel: the data set's items fill the frame along their longest side, and their
    shorter side, rounded to whole pixels, starts half a pixel late when the leftover
    is odd. An enlarged data-set image therefore comes back close to the original.
    """
    left, top, right, bottom = box
    side = max(right - left, bottom - top)
    scale = size / side

    def start(low: int, extent: int) -> float:
        """Source coordinate of the canvas' first pixel along one axis."""
        whole = min(size, max(1, round(extent * scale)))
        offset = (size - whole + 1) // 2 + (whole - extent * scale) / 2
        return low - offset / scale

    x0, y0 = start(left, right - left), start(top, bottom - top)
    # Black room (background) wherever the square window, with the filter's reach, leaves
    # the image.
    reach = math.ceil(3 * side / size) + 1
    before_x, before_y = max(0, math.ceil(-x0) + reach), max(0, math.ceil(-y0) + reach)
    after_x = max(0, math.ceil(x0 + side - array.shape[1]) + reach)
    after_y = max(0, math.ceil(y0 + side - array.shape[0]) + reach)
    padded = Image.fromarray(np.pad(array, ((before_y, after_y), (before_x, after_x))))
    window = (x0 + before_x, y0 + before_y, x0 + before_x + side, y0 + before_y + side)
    resized = padded.resize((size, size), Image.Resampling.LANCZOS, box=window)
    return np.array(resized, dtype=np.uint8)


def _fit(image: Image.Image, size: int) -> np.ndarray:
    """Resize the longest side to `size` and centre the image on a black square."""
    scale = size / max(image.size)
    width = max(1, round(image.width * scale))
    height = max(1, round(image.height * scale))
    resized = image.resize((width, height), Image.Resampling.LANCZOS)
    canvas = Image.new(image.mode, (size, size), 0)
    canvas.paste(resized, ((size - width + 1) // 2, (size - height + 1) // 2))
    return np.array(canvas, dtype=np.uint8)


def _canonical_rgb(image: Image.Image, prep: Preprocessing) -> np.ndarray:
    """Colour path: shorter side resized to size, then a centre crop."""
    if image.size != (prep.size, prep.size):
        image = ImageOps.fit(image, (prep.size, prep.size), Image.Resampling.BILINEAR)
    return np.asarray(image, dtype=np.uint8).transpose(2, 0, 1).copy()


def to_canonical(image: Image.Image, prep: Preprocessing = FASHION_MNIST) -> np.ndarray:
    """Convert a decoded image to the data set's form: uint8 of shape (C, size, size)."""
    image = _flatten(image, prep.mode)
    if prep.mode == "L":
        return _canonical_gray(image, prep)
    return _canonical_rgb(image, prep)


def to_tensor(canonical, prep: Preprocessing = FASHION_MNIST) -> torch.Tensor:
    """Scale uint8 canonical arrays, (C,H,W) or (N,C,H,W), to normalised float tensors."""
    if isinstance(canonical, np.ndarray) and not canonical.flags.writeable:
        canonical = canonical.copy()
    tensor = torch.as_tensor(canonical)
    if tensor.dtype != torch.uint8:
        raise TypeError(f"expected uint8 canonical images, got {tensor.dtype}")
    shape = (-1, 1, 1) if tensor.dim() == 3 else (1, -1, 1, 1)
    mean = torch.tensor(prep.mean).view(shape)
    std = torch.tensor(prep.std).view(shape)
    return (tensor.float() / 255.0 - mean) / std


def decode(source, prep: Preprocessing = FASHION_MNIST):
    """Decode an image as serving does, at no less than FIT_FACTOR times the input size
    (a large JPEG at a reduced scale): training data sets decode their files so too."""
    return load_image(source, FIT_FACTOR * prep.size)


def preprocess(source, prep: Preprocessing = FASHION_MNIST) -> torch.Tensor:
    """Bytes, a path or a PIL image to one model-input tensor of shape (C, size, size)."""
    return to_tensor(to_canonical(load_image(source), prep), prep)
