"""Glyphs and printed text in the fonts on this machine: font digits, letters, scripts,
symbols and text."""

import functools
import string
import unicodedata
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from training.outliers.canvas import (
    CANVAS,
    canonical_batch,
    centred_ink,
    finish_ink,
    matplotlib_file,
    shuffled,
    skimage_file,
    vary_pen,
)
from training.outliers.pictures import load_gray, random_crops

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
def font_files() -> tuple[str, ...]:
    """Text fonts: matplotlib's bundled ones, then system fonts, one file per name."""
    candidates = sorted(matplotlib_file("fonts/ttf").glob("*.ttf"))
    system = Path("/usr/share/fonts")
    if system.is_dir():
        candidates += sorted(p for p in system.rglob("*") if p.suffix.lower() in (".ttf", ".otf"))
    chosen: dict[str, str] = {}
    for path in candidates:
        known = (path.is_relative_to(matplotlib_file(""))
                 or path.name.startswith(tuple(SYSTEM_FONT_LICENCES)))
        if known and not any(skip in path.name for skip in _SKIPPED_FONTS):
            chosen.setdefault(path.name, str(path))
    if not chosen:
        raise FileNotFoundError(f"no fonts found under {matplotlib_file('fonts/ttf')}")
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
    fonts = font_files()
    table = ((c, [f for f in fonts if ord(c) in _cmap(f)]) for c in chars)
    # Spread the chosen fonts over the list (sans, mono, serif, ...); fewer renders to cache.
    return tuple((c, tuple(f[:: -(-len(f) // per_char)])) for c, f in table if f)


@functools.cache
def _font(path: str, size: int) -> ImageFont.FreeTypeFont:
    """A loaded font (cached: loading parses the file)."""
    return ImageFont.truetype(path, size)


@functools.cache
def _glyph(path: str, char: str) -> np.ndarray:
    """A glyph's ink on the canvas, longest side GLYPH pixels, centred."""
    image = Image.new("L", (CANVAS + 24, CANVAS + 24))
    middle = (image.width / 2, image.height / 2)
    font = _font(path, 40)
    ImageDraw.Draw(image).text(middle, char, fill=255, font=font, anchor="mm")
    return centred_ink(image)


def _glyphs(rng: np.random.Generator, chars: str, n: int) -> np.ndarray:
    """Ink of n random glyphs from `chars`, each in a random font that has it."""
    table = _coverage(chars, 64 if len(chars) < 100 else 4)
    ink = np.zeros((n, CANVAS, CANVAS), np.float32)
    for i, pick in enumerate(rng.integers(len(table), size=n)):
        char, fonts = table[pick]
        ink[i] = _glyph(fonts[rng.integers(len(fonts))], char)
    return ink


def draw_font_glyphs(chars: str, rng: np.random.Generator, n: int) -> np.ndarray:
    """Glyphs in random fonts, sizes, slants, pens and elastic distortions."""
    return finish_ink(rng, vary_pen(rng, _glyphs(rng, chars, n)), warp={})


def _random_text(rng: np.random.Generator, length: int) -> str:
    """Words of random letters and digits."""
    alphabet = LETTERS + DIGITS + "      .,"
    return "".join(alphabet[k] for k in rng.integers(len(alphabet), size=length))


@functools.cache
def _text_sheets() -> tuple[Image.Image, ...]:
    """Pages of random printed words in several fonts and sizes, rendered once (fixed seed)."""
    rng = np.random.default_rng(2024)
    fonts = font_files()
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
    fonts = font_files()
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
    return canonical_batch(out)


def draw_text(rng: np.random.Generator, n: int) -> np.ndarray:
    """Printed text: crops of rendered pages of random words and of a public-domain text
    image, and (a third) single lines of words uploaded on their own."""
    pages = [*_text_sheets(), load_gray(skimage_file("text.png"))]
    lines = n // 3
    crops = random_crops(rng, pages, n - lines, min_side=0.12, negative=0.25)
    return shuffled(rng, np.concatenate([crops, _text_lines(rng, lines)]))
