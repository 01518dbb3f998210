"""Pictures shipped with installed packages: photos, scientific images, textures, icons,
handwritten digits and faces."""

import functools
import gzip
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from training.outliers.canvas import (
    CANVAS,
    SIZE,
    canonical_batch,
    centred_ink,
    finish_ink,
    matplotlib_file,
    shuffled,
    skimage_file,
    sklearn_image,
)
from training.outliers.provenance import PHOTOS, SCIENTIFIC, TEXTURES
from training.outliers.synthetic import draw_blobs


@functools.cache
def load_gray(path: Path) -> Image.Image:
    """A picture decoded once, transparency composited on white, in grayscale."""
    with Image.open(path) as image:
        image.seek(0)
        image = image.convert("RGBA")
    white = Image.new("RGBA", image.size, (255, 255, 255, 255))
    return Image.alpha_composite(white, image).convert("L")


def _scaled(array: np.ndarray) -> Image.Image:
    """A numeric array stretched to 0-255 grayscale."""
    array = np.nan_to_num(np.asarray(array, np.float64))
    low, high = np.percentile(array, [0.5, 99.5])
    return Image.fromarray(
        (np.clip((array - low) / max(high - low, 1e-9), 0, 1) * 255).astype(np.uint8)
    )


@functools.lru_cache(maxsize=1)
def _mri() -> Image.Image:
    """Matplotlib's sample MRI slice (256x256, 16-bit)."""
    with gzip.open(matplotlib_file("sample_data/s1045.ima.gz")) as f:
        return _scaled(np.frombuffer(f.read(), np.uint16).reshape(256, 256))


@functools.lru_cache(maxsize=1)
def _elevation() -> tuple[Image.Image, Image.Image]:
    """Matplotlib's sample elevation maps (a fault line DEM and a topo-bathymetry grid)."""
    with np.load(matplotlib_file("sample_data/jacksboro_fault_dem.npz")) as dem:
        fault = _scaled(dem["elevation"])
    with np.load(matplotlib_file("sample_data/topobathy.npz")) as topo:
        relief = _scaled(topo["topo"])
    return fault, relief


def _tone_curves(rng: np.random.Generator, n: int, negative: float) -> np.ndarray:
    """Per-image lookup tables (n, 256): random gamma, contrast, brightness, some negatives."""
    level = np.arange(256) / 255
    gamma, contrast = np.exp(rng.normal(0, [[0.35], [0.3]], (2, n)))
    brightness = rng.normal(0, 0.1, (n, 1))
    curve = (level ** gamma[:, None] - 0.5) * contrast[:, None] + 0.5 + brightness
    flip = rng.random(n) < negative
    curve[flip] = 1 - curve[flip]
    return (np.clip(curve, 0, 1) * 255).astype(np.uint8)


def random_crops(
    rng: np.random.Generator,
    images: Sequence[Image.Image],
    n: int,
    min_side: float = 0.1,
    upload: float = 0.4,
    negative: float = 0.1,
) -> np.ndarray:
    """Random crops of pictures: resized to 28x28 like a thumbnail, or uploaded at up to 64 px."""
    picks = rng.integers(len(images), size=n)
    side = np.exp(rng.uniform(math.log(min_side), 0, n))
    aspect = np.exp(rng.uniform(-0.3, 0.3, n))
    corner = rng.random((n, 2))
    is_upload, mirror = rng.random((2, n)) < [[upload], [0.5]]
    curves = _tone_curves(rng, n, negative)
    out = []
    for i, pick in enumerate(picks):
        image = images[pick]
        w, h = image.size
        cw = min(w, min(w, h) * side[i] * aspect[i])
        ch = min(h, min(w, h) * side[i] / aspect[i])
        x0, y0 = corner[i, 0] * (w - cw), corner[i, 1] * (h - ch)
        scale = min(1.0, 64 / max(cw, ch))
        size = (SIZE, SIZE)
        if is_upload[i]:
            size = (max(1, round(cw * scale)), max(1, round(ch * scale)))
        box = (x0, y0, x0 + cw, y0 + ch)
        crop = image.resize(size, Image.Resampling.BILINEAR, box=box, reducing_gap=2.0)
        if mirror[i]:
            crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        out.append(curves[i][np.asarray(crop)])
    return canonical_batch(out)




def draw_photos(rng: np.random.Generator, n: int) -> np.ndarray:
    """Natural photographs (a cameraman, a cat, a cup, a rocket, coins, a clock)."""
    return random_crops(rng, [load_gray(skimage_file(name)) for name in PHOTOS], n)


def draw_sklearn_photos(rng: np.random.Generator, n: int) -> np.ndarray:
    """scikit-learn's two sample photographs (a temple, a flower): held out."""
    pictures = [load_gray(sklearn_image("china.jpg")), load_gray(sklearn_image("flower.jpg"))]
    return random_crops(rng, pictures, n)


def draw_scientific(rng: np.random.Generator, n: int) -> np.ndarray:
    """Microscopy, retina, astronomy, an MRI slice, a phantom and elevation maps."""
    images = [load_gray(skimage_file(name)) for name in SCIENTIFIC] + [_mri(), *_elevation()]
    return random_crops(rng, images, n, min_side=0.15)


def draw_textures(rng: np.random.Generator, n: int) -> np.ndarray:
    """Photographed textures (brick, grass, gravel) and synthetic blobs."""
    photos = int(rng.binomial(n, 0.7))
    pictures = [load_gray(skimage_file(name)) for name in TEXTURES]
    crops = random_crops(rng, pictures, photos, min_side=0.05)
    return shuffled(rng, np.concatenate([crops, draw_blobs(rng, n - photos)]))


@functools.lru_cache(maxsize=1)
def _icon_inks() -> tuple[np.ndarray, ...]:
    """Icons and logos as ink maps: matplotlib's toolbar, logos, a present, a horse silhouette."""
    paths = sorted(matplotlib_file("images").glob("*_large.png")) + [
        matplotlib_file("sample_data/logo2.png"),
        matplotlib_file("sample_data/Minduka_Present_Blue_Pack.png"),
        skimage_file("logo.png"),
        skimage_file("horse.png"),
    ]
    return tuple(centred_ink(Image.fromarray(255 - np.asarray(load_gray(p)))) for p in paths)


def draw_icons(rng: np.random.Generator, n: int) -> np.ndarray:
    """Icons and logos at random sizes, angles and positions, some mirrored."""
    inks = _icon_inks()
    ink = np.zeros((n, CANVAS, CANVAS), np.float32)
    for i, pick in enumerate(rng.integers(len(inks), size=n)):
        ink[i] = inks[pick]
    flip = rng.random(n) < 0.3
    ink[flip] = ink[flip, :, ::-1]
    warp = {"scale": (0.5, 1.1), "rotate": 30, "shear": 0.1, "elastic": 0.01}
    return finish_ink(rng, ink, upload=0.5, warp=warp)


@functools.lru_cache(maxsize=1)
def _digit_images() -> np.ndarray:
    """scikit-learn's 1,797 handwritten 8x8 digits as uint8 0-255."""
    # Imported here: scikit-learn is slow to import and only this held-out kind needs it.
    from sklearn.datasets import load_digits

    return (load_digits().images * (255 / 16)).astype(np.uint8)


def draw_sklearn_digits(rng: np.random.Generator, n: int) -> np.ndarray:
    """Handwritten digits (UCI, 8x8) upscaled smoothly; no distortion beyond size and place."""
    digits = _digit_images()
    ink = np.zeros((n, CANVAS, CANVAS), np.float32)
    for i, pick in enumerate(rng.integers(len(digits), size=n)):
        side = int(rng.integers(30, 53))
        digit = Image.fromarray(digits[pick])
        big = digit.resize((side, side), Image.Resampling.BICUBIC)
        top, left = rng.integers(0, CANVAS - side + 1, 2)
        ink[i, top : top + side, left : left + side] = np.asarray(big, np.float32) / 255
    return finish_ink(rng, ink)


@functools.lru_cache(maxsize=1)
def _lfw_images() -> tuple[Image.Image, ...]:
    """The 100 face crops (25x25) of the LFW subset shipped with scikit-image."""
    faces = np.load(skimage_file("lfw_subset.npy"))[:100]
    return tuple(Image.fromarray((face * 255).astype(np.uint8)) for face in faces)


def _portraits() -> list[Image.Image]:
    """Two head-and-shoulders portraits: an astronaut and Grace Hopper."""
    return [load_gray(skimage_file("astronaut.png")),
            load_gray(matplotlib_file("sample_data/grace_hopper.jpg"))]


def draw_faces(rng: np.random.Generator, n: int) -> np.ndarray:
    """Faces: LFW face crops (80%) and crops of two portraits (20%); held out."""
    portraits = int(rng.binomial(n, 0.2))
    lfw = random_crops(rng, _lfw_images(), n - portraits, min_side=0.7, negative=0.0)
    crops = random_crops(rng, _portraits(), portraits, min_side=0.3, negative=0.0)
    return shuffled(rng, np.concatenate([lfw, crops]))
