"""What every outlier kind shares: the canvas, the canonical form, distortions and the
data files of installed packages."""

import functools
from collections.abc import Callable, Sequence
from importlib.util import find_spec
from pathlib import Path

import matplotlib
import numpy as np
from PIL import Image

from training.preprocess import FASHION_MNIST, to_canonical

SIZE = 28  # side of a canonical image
CANVAS = 56  # drawing canvas, downsampled 2x to SIZE for anti-aliasing
GLYPH = 48  # longest side of a cached glyph or icon on the canvas

Kind = Callable[[np.random.Generator, int], np.ndarray]


def _package_dir(package: str) -> Path:
    """Folder of an installed package, found without importing it."""
    spec = find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"the outlier sources need the {package!r} package installed")
    return Path(spec.submodule_search_locations[0])


def skimage_file(name: str) -> Path:
    """A data file shipped inside the scikit-image wheel (no pooch download)."""
    return _package_dir("skimage") / "data" / name


def matplotlib_file(name: str) -> Path:
    """A file shipped inside matplotlib's mpl-data folder."""
    return Path(matplotlib.get_data_path()) / name


def sklearn_image(name: str) -> Path:
    """A sample image shipped inside scikit-learn."""
    return _package_dir("sklearn") / "datasets" / "images" / name


def canonical_batch(images: Sequence) -> np.ndarray:
    """Pass uint8 arrays or PIL images through the shared preprocessing: uint8 (n, 28, 28)."""
    out = np.empty((len(images), SIZE, SIZE), np.uint8)
    for i, image in enumerate(images):
        if isinstance(image, np.ndarray):
            image = Image.fromarray(image)
        out[i] = to_canonical(image, FASHION_MNIST)[0]
    return out


def _downsample(ink: np.ndarray) -> np.ndarray:
    """Average 2x2 blocks: (n, 56, 56) canvases to (n, 28, 28)."""
    return (ink[:, ::2, ::2] + ink[:, 1::2, ::2] + ink[:, ::2, 1::2] + ink[:, 1::2, 1::2]) / 4


def _paper(rng: np.random.Generator, ink: np.ndarray) -> np.ndarray:
    """What a photo or scan of the drawing would look like: mostly dark ink on light paper."""
    n = len(ink)
    light = rng.random(n) < 0.75
    paper = np.where(light, rng.uniform(170, 255, n), rng.uniform(0, 60, n))
    pen = np.where(light, rng.uniform(0, 100, n), rng.uniform(150, 255, n))
    paper, pen = paper[:, None, None], pen[:, None, None]
    grain = rng.standard_normal(ink.shape, dtype=np.float32)
    grain *= rng.uniform(0, 4, (n, 1, 1)).astype(np.float32)
    return np.clip(paper + (pen - paper) * ink + grain, 0, 255).astype(np.uint8)


def finish_ink(
    rng: np.random.Generator, ink: np.ndarray, upload: float = 0.3, warp: dict | None = None
) -> np.ndarray:
    """Ink maps (n, 56, 56) in [0, 1] to canonical images, raw 28x28 or uploaded on paper.

    `warp` holds `_warp` options, applied after downsampling to 28x28. An upload is the
    drawing on paper with a one-pixel margin (30x30), so that `to_canonical` trims and fits
    it instead of passing it through; warped uploads are drawn nearly frame-filling.
    """
    n = len(ink)
    small = _downsample(ink)
    is_upload = rng.random(n) < upload
    if warp is not None:
        small[~is_upload] = _warp(rng, small[~is_upload], **warp)
        small[is_upload] = _warp(rng, small[is_upload], **{**warp, "scale": (0.85, 1.1)})
    raw = small * rng.uniform(150, 255, (n, 1, 1))
    raw = np.clip(raw, 0, 255).astype(np.uint8)
    paper = np.pad(_paper(rng, small), ((0, 0), (1, 1), (1, 1)), mode="edge")
    return canonical_batch([paper[i] if is_upload[i] else raw[i] for i in range(n)])


def _affine(rng: np.random.Generator, n: int, scale, rotate: float, shear: float) -> np.ndarray:
    """Per-image matrices (n, 2, 3) from output to input coordinates in [-1, 1]."""
    zoom = rng.uniform(*scale, n)
    stretch = np.exp(rng.normal(0, 0.1, n))
    angle = np.deg2rad(rng.uniform(-rotate, rotate, n))
    cos, sin, slant = np.cos(angle), np.sin(angle), rng.uniform(-shear, shear, n)
    rotation = np.stack([np.stack([cos, -sin], -1), np.stack([sin, cos], -1)], -2)
    shearing = np.tile(np.eye(2), (n, 1, 1))
    shearing[:, 0, 1] = slant
    scaling = np.zeros((n, 2, 2))
    scaling[:, 0, 0] = 1 / (zoom * stretch)
    scaling[:, 1, 1] = stretch / zoom
    matrix = rotation @ shearing @ scaling
    room = np.clip(1 - zoom * GLYPH / CANVAS, 0, None)[:, None]
    offset = -np.einsum("nij,nj->ni", matrix, rng.uniform(-1, 1, (n, 2)) * room)
    return np.concatenate([matrix, offset[:, :, None]], 2)


@functools.cache
def _spline(size: int, knots: int = 5) -> np.ndarray:
    """Linear interpolation weights (size, knots) from a coarse grid to `size` pixels."""
    position = np.linspace(0, knots - 1, size)
    weights = np.maximum(0, 1 - np.abs(position[:, None] - np.arange(knots)[None]))
    return weights.astype(np.float32)


def _bilinear(images: np.ndarray, y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Sample each image at pixel coordinates (y, x), bilinearly, zero outside."""
    n, height, width = images.shape
    padded = np.pad(images.astype(np.float32), ((0, 0), (2, 2), (2, 2))).reshape(-1)
    y, x = np.clip(y + 2, 0, height + 2), np.clip(x + 2, 0, width + 2)
    y0, x0 = np.floor(y).astype(np.intp), np.floor(x).astype(np.intp)
    wy, wx = y - y0, x - x0
    stride = width + 4
    at = (np.arange(n) * (height + 4) * stride)[:, None, None] + y0 * stride + x0
    top = padded[at] * (1 - wx) + padded[at + 1] * wx
    bottom = padded[at + stride] * (1 - wx) + padded[at + stride + 1] * wx
    return top * (1 - wy) + bottom * wy


def _warp(
    rng: np.random.Generator,
    ink: np.ndarray,
    scale=(0.45, 1.1),
    rotate: float = 20.0,
    shear: float = 0.3,
    elastic: float = 0.05,
) -> np.ndarray:
    """Random zoom, shift, rotation, shear and smooth elastic displacement of square images."""
    n, size = len(ink), ink.shape[-1]
    centres = (np.arange(size) + 0.5) / size * 2 - 1
    gx, gy = np.meshgrid(centres, centres)
    base = np.stack([gx.ravel(), gy.ravel(), np.ones(size * size)]).astype(np.float32)
    matrices = _affine(rng, n, scale, rotate, shear).astype(np.float32)
    grid = (matrices @ base).reshape(n, 2, size, size)
    spline = _spline(size)
    coarse = rng.normal(0, elastic, (n, 2) + spline.shape[1:] * 2).astype(np.float32)
    grid += spline @ coarse @ spline.T
    x, y = ((grid + 1) * (size / 2) - 0.5).transpose(1, 0, 2, 3)
    return _bilinear(ink, y, x)


def _shifted_max(ink: np.ndarray) -> np.ndarray:
    """3x3 grey dilation of a batch (separable maximum)."""
    p = np.pad(ink, ((0, 0), (1, 1), (1, 1)))
    rows = np.maximum(np.maximum(p[:, :-2], p[:, 1:-1]), p[:, 2:])
    return np.maximum(np.maximum(rows[:, :, :-2], rows[:, :, 1:-1]), rows[:, :, 2:])


def vary_pen(rng: np.random.Generator, ink: np.ndarray, odds=(0.2, 0.35, 0.3, 0.15)) -> np.ndarray:
    """Thin, keep, thicken or thicken more strokes, with these odds, as different pens would."""
    choice = rng.choice(4, len(ink), p=odds)
    out = ink.copy()
    thin = 1 - _shifted_max(1 - ink[choice == 0])
    # Eroding a thin glyph can erase it: keep the original where most ink would vanish.
    kept = thin.sum((1, 2)) >= 0.4 * ink[choice == 0].sum((1, 2))
    out[np.flatnonzero(choice == 0)[kept]] = thin[kept]
    thick = _shifted_max(ink[choice >= 2])
    thicker = choice[choice >= 2] == 3
    thick[thicker] = _shifted_max(thick[thicker])
    out[choice >= 2] = thick
    return out


def centred_ink(image: Image.Image) -> np.ndarray:
    """Ink (light on black) scaled to GLYPH on its longest side, centred on a CANVAS square."""
    box = image.getbbox()
    canvas = np.zeros((CANVAS, CANVAS), np.float32)
    if box is None:
        return canvas
    image = image.crop(box)
    scale = GLYPH / max(image.size)
    width = max(1, round(image.width * scale))
    height = max(1, round(image.height * scale))
    resized = image.resize((width, height), Image.Resampling.BILINEAR)
    top, left = (CANVAS - height) // 2, (CANVAS - width) // 2
    canvas[top : top + height, left : left + width] = np.asarray(resized) / 255
    return np.clip(canvas, 0, 1)


def shuffled(rng: np.random.Generator, images: np.ndarray) -> np.ndarray:
    """The images in random order."""
    return images[rng.permutation(len(images))]
