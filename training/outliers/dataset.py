"""The outlier data set: every kind by name, the training/held-out split, sources and
balanced, seeded sets of outliers."""

import functools
import logging
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from training.outliers.canvas import Kind, _mpl
from training.outliers.charts import charts
from training.outliers.drawings import _scribbles, _shapes
from training.outliers.glyphs import (
    DIGITS,
    LETTERS,
    SCRIPTS,
    SYMBOLS,
    SYSTEM_FONT_LICENCES,
    _font_files,
    _font_glyphs,
    _text,
)
from training.outliers.pictures import (
    _faces,
    _icons,
    _photos,
    _scientific,
    _sklearn_digits,
    _sklearn_photos,
    _textures,
)
from training.outliers.provenance import FONT_KINDS, SOURCES
from training.outliers.synthetic import _constant, _gradients, _noise, _patterns

log = logging.getLogger(__name__)

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

