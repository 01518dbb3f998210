"""The filter's outlier data set: images that are not clothing, built from offline sources.

Every kind is a function ``(rng, n) -> uint8 array (n, 28, 28)``. Its images come out in
the form the filter sees: either drawn directly at 28x28 as a light drawing on a dark
background (like an MNIST digit fed straight in) or drawn as an upload (ink on paper, a
photo crop) and passed through `training.preprocess.to_canonical`, the path every upload
takes. Nothing is downloaded: fonts, photos and digits come from installed packages.

Usage::

    python -m training.outliers --preview outliers.png
"""

import argparse
import functools
import gzip
import logging
import math
import string
import time
import unicodedata
import zlib
from collections.abc import Callable, Sequence
from importlib.util import find_spec
from pathlib import Path

import matplotlib
import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from training.outlier_charts import charts
from training.outlier_sources import FONT_KINDS, PHOTOS, SCIENTIFIC, SOURCES, TEXTURES
from training.preprocess import FASHION_MNIST, to_canonical

log = logging.getLogger(__name__)

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


def _skimage(name: str) -> Path:
    """A data file shipped inside the scikit-image wheel (no pooch download)."""
    return _package_dir("skimage") / "data" / name


def _mpl(name: str) -> Path:
    """A file shipped inside matplotlib's mpl-data folder."""
    return Path(matplotlib.get_data_path()) / name


def _sklearn(name: str) -> Path:
    """A sample image shipped inside scikit-learn."""
    return _package_dir("sklearn") / "datasets" / "images" / name


# ----------------------------------------------------------------------------- canonical form


def _canonical(images: Sequence) -> np.ndarray:
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


def _finish(
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
    return _canonical([paper[i] if is_upload[i] else raw[i] for i in range(n)])


# ----------------------------------------------------------------------------- distortions


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


def _pen(rng: np.random.Generator, ink: np.ndarray, odds=(0.2, 0.35, 0.3, 0.15)) -> np.ndarray:
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


# ----------------------------------------------------------------------------- fonts and glyphs

# System font families used when installed, with their licences (others are ignored).
SYSTEM_FONT_LICENCES = {
    "DejaVu": "Bitstream Vera Fonts licence (DejaVu changes in the public domain)",
    "Liberation": "SIL Open Font License 1.1",
    "Noto": "SIL Open Font License 1.1",
}
_SKIPPED_FONTS = ("LastResort", "STIXNonUni", "STIXSiz", "Display", "cmex10", "cmsy10")

DIGITS = string.digits
LETTERS = string.ascii_letters
_SCRIPT_RANGES = (
    (0x0391, 0x03C9),  # Greek
    (0x0410, 0x044F),  # Cyrillic
    (0x0531, 0x0586),  # Armenian
    (0x05D0, 0x05EA),  # Hebrew
    (0x0627, 0x064A),  # Arabic
    (0x07CA, 0x07EA),  # N'Ko
    (0x0E81, 0x0EAE),  # Lao
    (0x10D0, 0x10FA),  # Georgian
    (0x1401, 0x166C),  # Canadian syllabics
    (0x1681, 0x169A),  # Ogham
    (0x2D30, 0x2D67),  # Tifinagh
)
_SYMBOL_RANGES = (
    (0x0021, 0x002F),  # ASCII punctuation
    (0x20A0, 0x20B9),  # currency
    (0x2190, 0x21FF),  # arrows
    (0x2200, 0x22FF),  # mathematical operators
    (0x2300, 0x23FF),  # technical
    (0x25A0, 0x25FF),  # geometric shapes
    (0x2600, 0x26FF),  # miscellaneous symbols
    (0x2700, 0x27BF),  # dingbats
    (0x2800, 0x28FF),  # braille
)


def _chars(ranges, categories: str) -> str:
    """Characters in the ranges whose Unicode category starts with one of `categories`."""
    found = (chr(c) for start, end in ranges for c in range(start, end + 1))
    return "".join(c for c in found if unicodedata.category(c)[0] in categories)


SCRIPTS = _chars(_SCRIPT_RANGES, "L")
SYMBOLS = _chars(_SYMBOL_RANGES, "SP")


@functools.lru_cache(maxsize=1)
def _font_files() -> tuple[str, ...]:
    """Text fonts: matplotlib's bundled ones, then system fonts, one file per name."""
    candidates = sorted(_mpl("fonts/ttf").glob("*.ttf"))
    system = Path("/usr/share/fonts")
    if system.is_dir():
        candidates += sorted(p for p in system.rglob("*") if p.suffix.lower() in (".ttf", ".otf"))
    chosen: dict[str, str] = {}
    for path in candidates:
        known = path.is_relative_to(_mpl("")) or path.name.startswith(tuple(SYSTEM_FONT_LICENCES))
        if known and not any(skip in path.name for skip in _SKIPPED_FONTS):
            chosen.setdefault(path.name, str(path))
    if not chosen:
        raise FileNotFoundError(f"no fonts found under {_mpl('fonts/ttf')}")
    return tuple(chosen.values())


@functools.cache
def _cmap(path: str) -> frozenset[int]:
    """Code points a font has glyphs for."""
    from fontTools.ttLib import TTFont  # matplotlib's own dependency

    with TTFont(path, lazy=True) as font:
        return frozenset(font["cmap"].getBestCmap() or ())


@functools.cache
def _coverage(chars: str, per_char: int) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """Each character that some font can draw, with up to `per_char` fonts that can."""
    fonts = _font_files()
    table = ((c, [f for f in fonts if ord(c) in _cmap(f)]) for c in chars)
    # Spread the chosen fonts over the list (sans, mono, serif, ...); fewer renders to cache.
    return tuple((c, tuple(f[:: -(-len(f) // per_char)])) for c, f in table if f)


@functools.cache
def _font(path: str, size: int) -> ImageFont.FreeTypeFont:
    """A loaded font (cached: loading parses the file)."""
    return ImageFont.truetype(path, size)


def _centred(image: Image.Image) -> np.ndarray:
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


@functools.cache
def _glyph(path: str, char: str) -> np.ndarray:
    """A glyph's ink on the canvas, longest side GLYPH pixels, centred."""
    image = Image.new("L", (CANVAS + 24, CANVAS + 24))
    middle = (image.width / 2, image.height / 2)
    font = _font(path, 40)
    ImageDraw.Draw(image).text(middle, char, fill=255, font=font, anchor="mm")
    return _centred(image)


def _glyphs(rng: np.random.Generator, chars: str, n: int) -> np.ndarray:
    """Ink of n random glyphs from `chars`, each in a random font that has it."""
    table = _coverage(chars, 64 if len(chars) < 100 else 4)
    ink = np.zeros((n, CANVAS, CANVAS), np.float32)
    for i, pick in enumerate(rng.integers(len(table), size=n)):
        char, fonts = table[pick]
        ink[i] = _glyph(fonts[rng.integers(len(fonts))], char)
    return ink


def _font_glyphs(chars: str, rng: np.random.Generator, n: int) -> np.ndarray:
    """Glyphs in random fonts, sizes, slants, pens and elastic distortions."""
    return _finish(rng, _pen(rng, _glyphs(rng, chars, n)), warp={})


# ----------------------------------------------------------------------------- drawings


_T = np.linspace(0, 1, 12)[:, None]
_BERNSTEIN = np.hstack([(1 - _T) ** 3, 3 * (1 - _T) ** 2 * _T, 3 * (1 - _T) * _T**2, _T**3])


def _stroke(rng: np.random.Generator, segments: int) -> np.ndarray:
    """Points (m, 2) along a chain of cubic Bezier segments whose knots walk at random."""
    knots = np.cumsum(rng.normal(0, 9, (3 * segments + 1, 2)), axis=0)
    controls = np.stack([knots[i : i + 4] for i in range(0, 3 * segments, 3)])
    return (_BERNSTEIN @ controls).reshape(-1, 2)


def _scribble(rng: np.random.Generator) -> Image.Image:
    """One to three pen strokes, sometimes a dot, scaled to fill the canvas."""
    strokes = [_stroke(rng, int(rng.integers(1, 4))) for _ in range(rng.integers(1, 4))]
    points = np.concatenate(strokes)
    for centre in points[rng.integers(len(points), size=rng.poisson(0.3))]:
        strokes.append(centre + rng.normal(0, 6, 2) + [[0, 0], [1, 1]])  # a dot
    points = np.concatenate(strokes)
    low, span = points.min(0), np.ptp(points, axis=0)
    scale = (CANVAS - 12) / max(span.max(), 10)
    offset = 6 + ((CANVAS - 12) - span * scale) / 2
    image = Image.new("L", (CANVAS, CANVAS))
    draw = ImageDraw.Draw(image)
    for stroke in strokes:
        draw.line(((stroke - low) * scale + offset).ravel().tolist(), fill=255, width=3)
    return image


def _scribbles(rng: np.random.Generator, n: int) -> np.ndarray:
    """Handwriting-like strokes (Omniglot-like characters, doodles, cursive fragments)."""
    ink = np.zeros((n, CANVAS, CANVAS), np.float32)
    for i in range(n):
        ink[i] = np.asarray(_scribble(rng), np.float32) / 255
    warp = {"scale": (0.5, 1.1), "rotate": 15, "elastic": 0.03}
    return _finish(rng, _pen(rng, ink, odds=(0, 0.7, 0.3, 0)), warp=warp)


def _polygon(rng: np.random.Generator, star: bool) -> list[tuple[float, float]]:
    """Corners of a random polygon, or of a regular star, around the canvas centre."""
    sides = int(rng.integers(3, 9))
    if star:
        angles = np.linspace(0, 2 * np.pi, 2 * sides, endpoint=False)
        radius = rng.uniform(8, CANVAS / 2 - 2) * np.tile([1, rng.uniform(0.3, 0.6)], sides)
    else:
        angles = np.sort(rng.uniform(0, 2 * np.pi, sides))
        radius = np.full(sides, rng.uniform(8, CANVAS / 2 - 2))
    centre = rng.uniform(CANVAS / 2 - 6, CANVAS / 2 + 6, 2)
    corners = centre + np.stack([np.cos(angles), np.sin(angles)], 1) * radius[:, None]
    return [tuple(corner) for corner in corners]


def _random_shape(rng: np.random.Generator, draw: ImageDraw.ImageDraw) -> None:
    """Draw one random ellipse, rectangle, polygon, star, line or arc."""
    colour, width = int(rng.integers(80, 256)), int(rng.integers(1, 7))
    fill = colour if rng.random() < 0.5 else None
    (x0, x1), (y0, y1) = np.sort(rng.uniform(2, CANVAS - 2, (2, 2)), axis=1)
    box = (float(x0), float(y0), float(x1), float(y1))
    shape = rng.integers(6)
    if shape == 0:
        draw.ellipse(box, fill=fill, outline=colour, width=width)
    elif shape == 1:
        draw.rectangle(box, fill=fill, outline=colour, width=width)
    elif shape in (2, 3):
        draw.polygon(_polygon(rng, star=shape == 3), fill=fill, outline=colour, width=width)
    elif shape == 4:
        draw.line(box, fill=colour, width=width)
    else:
        start, end = rng.uniform(0, 360, 2)
        draw.arc(box, float(start), float(end), fill=colour, width=width)


def _shapes(rng: np.random.Generator, n: int) -> np.ndarray:
    """Geometric shapes: one to four ellipses, boxes, polygons, stars, lines or arcs."""
    ink = np.zeros((n, CANVAS, CANVAS), np.float32)
    for i in range(n):
        image = Image.new("L", (CANVAS, CANVAS))
        draw = ImageDraw.Draw(image)
        for _ in range(rng.integers(1, 5)):
            _random_shape(rng, draw)
        ink[i] = np.asarray(image, np.float32) / 255
    return _finish(rng, ink, upload=0.3)


def _random_text(rng: np.random.Generator, length: int) -> str:
    """Words of random letters and digits."""
    alphabet = LETTERS + DIGITS + "      .,"
    return "".join(alphabet[k] for k in rng.integers(len(alphabet), size=length))


@functools.cache
def _text_sheets() -> tuple[Image.Image, ...]:
    """Pages of random printed words in several fonts and sizes, rendered once (fixed seed)."""
    rng = np.random.default_rng(2024)
    fonts = _font_files()
    sheets = []
    for size in (8, 10, 12, 14, 17, 20) * 2:
        font = _font(fonts[rng.integers(len(fonts))], size)
        sheet = Image.new("L", (256, 192), 255)
        draw = ImageDraw.Draw(sheet)
        for y in range(0, sheet.height, int(size * rng.uniform(1.15, 1.7))):
            draw.text((int(rng.integers(-10, 6)), y), _random_text(rng, 48), fill=0, font=font)
        sheets.append(sheet)
    return tuple(sheets)


def _text_lines(rng: np.random.Generator, n: int) -> np.ndarray:
    """Single lines of printed words uploaded as wide pictures (a caption, a label, a
    screenshot of a sentence): trimmed and fitted, a line fills the width in a thin band."""
    fonts = _font_files()
    out = []
    for _ in range(n):
        font = _font(fonts[rng.integers(len(fonts))], int(rng.integers(9, 41)))
        words = _random_text(rng, int(rng.integers(3, 31))).strip() or "x"
        left, top, right, bottom = font.getbbox(words)
        height = max(1, bottom - top)
        pad = (rng.uniform(0, 3, 4) * height).astype(int) + 1
        light = rng.random() < 0.8
        paper = rng.uniform(200, 255) if light else rng.uniform(0, 60)
        pen = rng.uniform(0, 80) if light else rng.uniform(170, 255)
        image = Image.new("L", (right - left + pad[0] + pad[2], height + pad[1] + pad[3]),
                          int(paper))
        ImageDraw.Draw(image).text((pad[0] - left, pad[1] - top), words, fill=int(pen),
                                   font=font)
        out.append(np.asarray(image))
    return _canonical(out)


def _text(rng: np.random.Generator, n: int) -> np.ndarray:
    """Printed text: crops of rendered pages of random words and of a public-domain text
    image, and (a third) single lines of words uploaded on their own."""
    pages = [*_text_sheets(), _gray(_skimage("text.png"))]
    lines = n // 3
    crops = _crops(rng, pages, n - lines, min_side=0.12, negative=0.25)
    return _shuffled(rng, np.concatenate([crops, _text_lines(rng, lines)]))


def _shuffled(rng: np.random.Generator, images: np.ndarray) -> np.ndarray:
    """The images in random order."""
    return images[rng.permutation(len(images))]


# ----------------------------------------------------------------------------- photos and icons


@functools.cache
def _gray(path: Path) -> Image.Image:
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
    with gzip.open(_mpl("sample_data/s1045.ima.gz")) as f:
        return _scaled(np.frombuffer(f.read(), np.uint16).reshape(256, 256))


@functools.lru_cache(maxsize=1)
def _elevation() -> tuple[Image.Image, Image.Image]:
    """Matplotlib's sample elevation maps (a fault line DEM and a topo-bathymetry grid)."""
    with np.load(_mpl("sample_data/jacksboro_fault_dem.npz")) as dem:
        fault = _scaled(dem["elevation"])
    with np.load(_mpl("sample_data/topobathy.npz")) as topo:
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


def _crops(
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
    return _canonical(out)




def _photos(rng: np.random.Generator, n: int) -> np.ndarray:
    """Natural photographs (a cameraman, a cat, a cup, a rocket, coins, a clock)."""
    return _crops(rng, [_gray(_skimage(name)) for name in PHOTOS], n)


def _sklearn_photos(rng: np.random.Generator, n: int) -> np.ndarray:
    """scikit-learn's two sample photographs (a temple, a flower): held out."""
    return _crops(rng, [_gray(_sklearn("china.jpg")), _gray(_sklearn("flower.jpg"))], n)


def _scientific(rng: np.random.Generator, n: int) -> np.ndarray:
    """Microscopy, retina, astronomy, an MRI slice, a phantom and elevation maps."""
    images = [_gray(_skimage(name)) for name in SCIENTIFIC] + [_mri(), *_elevation()]
    return _crops(rng, images, n, min_side=0.15)


def _blobs(rng: np.random.Generator, n: int) -> np.ndarray:
    """Synthetic binary blobs: smooth noise cut at a random level, in two grey levels."""
    field = _power_noise(rng, n, rng.uniform(2.5, 4.0, (n, 1, 1)))
    ranked = np.sort(field.reshape(n, SIZE * SIZE), axis=1)
    cut = ranked[np.arange(n), (rng.uniform(0.3, 0.7, n) * SIZE * SIZE).astype(int)]
    blobs = field > cut[:, None, None]
    low, high = np.sort(rng.uniform(0, 255, (2, n, 1, 1)), axis=0)
    return _canonical(list((low + (high - low) * blobs).astype(np.uint8)))


def _textures(rng: np.random.Generator, n: int) -> np.ndarray:
    """Photographed textures (brick, grass, gravel) and synthetic blobs."""
    photos = int(rng.binomial(n, 0.7))
    pictures = [_gray(_skimage(name)) for name in TEXTURES]
    crops = _crops(rng, pictures, photos, min_side=0.05)
    return _shuffled(rng, np.concatenate([crops, _blobs(rng, n - photos)]))


@functools.lru_cache(maxsize=1)
def _icon_inks() -> tuple[np.ndarray, ...]:
    """Icons and logos as ink maps: matplotlib's toolbar, logos, a present, a horse silhouette."""
    paths = sorted(_mpl("images").glob("*_large.png")) + [
        _mpl("sample_data/logo2.png"),
        _mpl("sample_data/Minduka_Present_Blue_Pack.png"),
        _skimage("logo.png"),
        _skimage("horse.png"),
    ]
    return tuple(_centred(Image.fromarray(255 - np.asarray(_gray(p)))) for p in paths)


def _icons(rng: np.random.Generator, n: int) -> np.ndarray:
    """Icons and logos at random sizes, angles and positions, some mirrored."""
    inks = _icon_inks()
    ink = np.zeros((n, CANVAS, CANVAS), np.float32)
    for i, pick in enumerate(rng.integers(len(inks), size=n)):
        ink[i] = inks[pick]
    flip = rng.random(n) < 0.3
    ink[flip] = ink[flip, :, ::-1]
    warp = {"scale": (0.5, 1.1), "rotate": 30, "shear": 0.1, "elastic": 0.01}
    return _finish(rng, ink, upload=0.5, warp=warp)


# ----------------------------------------------------------------------------- held-out sources


@functools.lru_cache(maxsize=1)
def _digit_images() -> np.ndarray:
    """scikit-learn's 1,797 handwritten 8x8 digits as uint8 0-255."""
    # Imported here: scikit-learn is slow to import and only this held-out kind needs it.
    from sklearn.datasets import load_digits

    return (load_digits().images * (255 / 16)).astype(np.uint8)


def _sklearn_digits(rng: np.random.Generator, n: int) -> np.ndarray:
    """Handwritten digits (UCI, 8x8) upscaled smoothly; no distortion beyond size and place."""
    digits = _digit_images()
    ink = np.zeros((n, CANVAS, CANVAS), np.float32)
    for i, pick in enumerate(rng.integers(len(digits), size=n)):
        side = int(rng.integers(30, 53))
        digit = Image.fromarray(digits[pick])
        big = digit.resize((side, side), Image.Resampling.BICUBIC)
        top, left = rng.integers(0, CANVAS - side + 1, 2)
        ink[i, top : top + side, left : left + side] = np.asarray(big, np.float32) / 255
    return _finish(rng, ink)


@functools.lru_cache(maxsize=1)
def _lfw_images() -> tuple[Image.Image, ...]:
    """The 100 face crops (25x25) of the LFW subset shipped with scikit-image."""
    faces = np.load(_skimage("lfw_subset.npy"))[:100]
    return tuple(Image.fromarray((face * 255).astype(np.uint8)) for face in faces)


def _portraits() -> list[Image.Image]:
    """Two head-and-shoulders portraits: an astronaut and Grace Hopper."""
    return [_gray(_skimage("astronaut.png")), _gray(_mpl("sample_data/grace_hopper.jpg"))]


def _faces(rng: np.random.Generator, n: int) -> np.ndarray:
    """Faces: LFW face crops (80%) and crops of two portraits (20%); held out."""
    portraits = int(rng.binomial(n, 0.2))
    lfw = _crops(rng, _lfw_images(), n - portraits, min_side=0.7, negative=0.0)
    crops = _crops(rng, _portraits(), portraits, min_side=0.3, negative=0.0)
    return _shuffled(rng, np.concatenate([lfw, crops]))


def _patterns(rng: np.random.Generator, n: int) -> np.ndarray:
    """Periodic patterns: stripes, checkerboards, grids, rings and dot lattices (held out)."""
    y, x = (np.mgrid[0:SIZE, 0:SIZE] / SIZE - 0.5)[:, None]
    angle = rng.uniform(0, np.pi, (n, 1, 1))
    freq = rng.uniform(1.5, 9, (n, 1, 1))
    phase = rng.uniform(0, 2 * np.pi, (n, 1, 1))
    u, v = x * np.cos(angle) + y * np.sin(angle), -x * np.sin(angle) + y * np.cos(angle)
    cx, cy = rng.uniform(-0.3, 0.3, (2, n, 1, 1))
    wave = np.stack(
        [
            np.sin(2 * np.pi * freq * u + phase),
            np.sin(2 * np.pi * freq * u) * np.sin(2 * np.pi * freq * v + phase),
            2 * np.maximum(np.cos(np.pi * freq * u), np.cos(np.pi * freq * v)) ** 16 - 1,
            np.sin(2 * np.pi * freq * np.hypot(x - cx, y - cy) + phase),
            np.cos(2 * np.pi * freq * u) + np.cos(2 * np.pi * freq * v) - 1,
        ]
    )[rng.integers(5, size=n), np.arange(n)]
    square = rng.random(n) < 0.5
    wave[square] = np.sign(wave[square])
    low, high = np.sort(rng.uniform(0, 255, (2, n, 1, 1)), axis=0)
    image = np.clip(low + (high - low) * (wave + 1) / 2, 0, 255)
    return _canonical(list(image.astype(np.uint8)))


# ----------------------------------------------------------------------------- synthetic


def _power_noise(rng: np.random.Generator, n: int, exponent) -> np.ndarray:
    """Noise with a 1/f**exponent power spectrum, scaled to [0, 1] per image (n, 28, 28)."""
    fy, fx = np.meshgrid(np.fft.fftfreq(SIZE), np.fft.rfftfreq(SIZE), indexing="ij")
    radius = np.maximum(np.hypot(fy, fx), 1 / SIZE)
    falloff = radius ** (np.asarray(exponent) / 2)
    spectrum = np.fft.rfft2(rng.normal(size=(n, SIZE, SIZE))) / falloff
    field = np.fft.irfft2(spectrum, s=(SIZE, SIZE))
    low, high = field.min((1, 2), keepdims=True), field.max((1, 2), keepdims=True)
    return (field - low) / np.maximum(high - low, 1e-9)


def _noise(rng: np.random.Generator, n: int) -> np.ndarray:
    """Gaussian, uniform, salt-and-pepper and smooth (blurred, cloud-like) noise."""
    shape = (n, SIZE, SIZE)
    mean, spread = rng.uniform(30, 225, (n, 1, 1)), rng.uniform(10, 90, (n, 1, 1))
    low, high = np.sort(rng.uniform(0, 255, (2, n, 1, 1)), axis=0)
    salt = rng.random(shape) < rng.uniform(0.02, 0.5, (n, 1, 1))
    smooth = _power_noise(rng, n, rng.uniform(1, 4, (n, 1, 1)))
    noise = np.stack(
        [
            rng.normal(mean, spread, shape),
            rng.uniform(low, high, shape),
            np.where(salt, np.where(rng.random(shape) < 0.5, 255.0, 0.0), mean),
            low + (high - low) * smooth,
        ]
    )[rng.integers(4, size=n), np.arange(n)]
    return _canonical(list(np.clip(noise, 0, 255).astype(np.uint8)))


def _gradients(rng: np.random.Generator, n: int) -> np.ndarray:
    """Linear, radial and angular gradients, smooth or in a few bands."""
    y, x = (np.mgrid[0:SIZE, 0:SIZE] / (SIZE - 1) - 0.5)[:, None]
    angle = rng.uniform(0, 2 * np.pi, (n, 1, 1))
    cx, cy = rng.uniform(-0.6, 0.6, (2, n, 1, 1))
    ramp = np.stack(
        [
            x * np.cos(angle) + y * np.sin(angle),
            np.hypot(x - cx, y - cy),
            np.arctan2(y - cy, x - cx) + angle,
        ]
    )[rng.integers(3, size=n), np.arange(n)]
    span = np.ptp(ramp, (1, 2), keepdims=True).clip(1e-9)
    ramp = (ramp - ramp.min((1, 2), keepdims=True)) / span
    bands = rng.integers(2, 5, (n, 1, 1))
    ramp = np.where(rng.random((n, 1, 1)) < 0.25, np.floor(ramp * bands) / bands, ramp)
    low, high = rng.uniform(0, 255, (2, n, 1, 1))
    ramp = ramp ** rng.uniform(0.5, 2, (n, 1, 1))
    return _canonical(list((low + (high - low) * ramp).astype(np.uint8)))


def _constant(rng: np.random.Generator, n: int) -> np.ndarray:
    """Blank images: black, white, mid-grey or any level, some with faint sensor noise."""
    named = rng.choice([0, 255, 128], n)
    level = np.where(rng.random(n) < 0.6, named, rng.uniform(0, 255, n))
    spread = np.where(rng.random(n) < 0.5, rng.uniform(0, 4, n), 0)[:, None, None]
    faint = rng.normal(0, 1, (n, SIZE, SIZE)) * spread
    image = np.clip(level[:, None, None] + faint, 0, 255)
    return _canonical(list(image.astype(np.uint8)))


# ----------------------------------------------------------------------------- the data set

KINDS: dict[str, Kind] = {
    "font_digits": functools.partial(_font_glyphs, DIGITS),
    "font_letters": functools.partial(_font_glyphs, LETTERS),
    "font_scripts": functools.partial(_font_glyphs, SCRIPTS),
    "font_symbols": functools.partial(_font_glyphs, SYMBOLS),
    "text": _text,
    "scribbles": _scribbles,
    "shapes": _shapes,
    "icons": _icons,
    "photos": _photos,
    "scientific": _scientific,
    "textures": _textures,
    "noise": _noise,
    "gradients": _gradients,
    "constant": _constant,
    "sklearn_digits": _sklearn_digits,
    "faces": _faces,
    "sklearn_photos": _sklearn_photos,
    "patterns": _patterns,
    "charts": charts,
}
# Held out: real handwriting (training only sees font digits made to look handwritten),
# faces and a second source of photographs, periodic patterns (no synthetic training
# kind is periodic; bricks come closest) and charts (plots, bars and pies, neither
# glyphs nor digits). They measure generalisation only.
HELD_OUT_KINDS: tuple[str, ...] = (
    "sklearn_digits",
    "faces",
    "sklearn_photos",
    "patterns",
    "charts",
)
TRAIN_KINDS: tuple[str, ...] = tuple(k for k in KINDS if k not in HELD_OUT_KINDS)

def sources() -> list[dict]:
    """Where every kind's images come from and under which licence (for docs and model cards)."""
    found = [dict(source) for source in SOURCES]
    system = sorted({Path(f).name for f in _font_files() if not Path(f).is_relative_to(_mpl(""))})
    for family, licence in SYSTEM_FONT_LICENCES.items():
        files = [name for name in system if name.startswith(family)]
        if files:
            found.append(
                {
                    "name": f"{family} system fonts",
                    "kinds": FONT_KINDS,
                    "origin": "/usr/share/fonts: " + ", ".join(files),
                    "licence": licence,
                }
            )
    return found


def _kind_rng(seed: int, kind: str) -> np.random.Generator:
    """A generator of its own for each kind, so adding a kind leaves the others unchanged."""
    return np.random.default_rng([seed, zlib.crc32(kind.encode())])


def make_outliers(kinds: Sequence[str], n: int, seed: int = 0) -> torch.Tensor:
    """n outliers balanced over `kinds`, shuffled: uint8 (n, 1, 28, 28), the same for a seed."""
    kinds = tuple(kinds)
    unknown = [k for k in kinds if k not in KINDS]
    if unknown or not kinds:
        raise ValueError(f"unknown outlier kinds {unknown or kinds}; supported: {', '.join(KINDS)}")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    counts = [n // len(kinds) + (i < n % len(kinds)) for i in range(len(kinds))]
    parts = [
        KINDS[kind](_kind_rng(seed, kind), count) for kind, count in zip(kinds, counts, strict=True)
    ]
    images = np.concatenate(parts)[np.random.default_rng(seed).permutation(n)]
    return torch.from_numpy(images).unsqueeze(1)


def preview(path, per_kind: int = 16, seed: int = 0) -> None:
    """Write a PNG grid with a row of samples per kind (held-out kinds marked)."""
    from matplotlib.figure import Figure  # Agg canvas, no pyplot state

    figure = Figure(figsize=(per_kind * 0.6 + 1.6, len(KINDS) * 0.62))
    axes = figure.subplots(len(KINDS), per_kind, squeeze=False)
    for row, kind in zip(axes, KINDS, strict=True):
        images = KINDS[kind](_kind_rng(seed, kind), per_kind)
        label = f"{kind}*" if kind in HELD_OUT_KINDS else kind
        for ax, image in zip(row, images, strict=True):
            ax.imshow(image, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
            ax.set_xticks([]), ax.set_yticks([])
        row[0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
    figure.suptitle("Outlier kinds (* held out)", fontsize=9)
    figure.subplots_adjust(left=0.14, right=0.99, top=0.97, bottom=0.01, wspace=0.05, hspace=0.05)
    figure.savefig(path, dpi=80)
    log.info("wrote %s", path)


def get_args_parser() -> argparse.ArgumentParser:
    """Command-line options for previewing and timing the outlier set."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preview", metavar="PATH", help="write a PNG grid of samples per kind")
    parser.add_argument(
        "--n",
        type=int,
        default=0,
        help="time generating n training outliers (default: 0)",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    return parser


def main(args: argparse.Namespace) -> None:
    """Preview and/or time the outlier set."""
    if args.preview:
        preview(args.preview, seed=args.seed)
    if args.n:
        start = time.perf_counter()
        images = make_outliers(TRAIN_KINDS, args.n, args.seed)
        log.info(
            "%d outliers %s in %.1f s",
            len(images),
            tuple(images.shape),
            time.perf_counter() - start,
        )


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    main(get_args_parser().parse_args())
