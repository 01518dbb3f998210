"""The outlier data set: every kind by name, the training/held-out split, sources and
balanced, seeded sets of outliers."""

import functools
import logging
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from training.outliers.canvas import Kind, matplotlib_file
from training.outliers.charts import charts
from training.outliers.diagrams import diagrams
from training.outliers.drawings import draw_scribbles, draw_shapes
from training.outliers.glyphs import (
    DIGITS,
    LETTERS,
    SCRIPTS,
    SYMBOLS,
    SYSTEM_FONT_LICENCES,
    draw_font_glyphs,
    draw_text,
    font_files,
)
from training.outliers.pictures import (
    draw_faces,
    draw_icons,
    draw_photos,
    draw_scientific,
    draw_sklearn_digits,
    draw_sklearn_photos,
    draw_textures,
)
from training.outliers.provenance import FONT_KINDS, SOURCES
from training.outliers.synthetic import draw_constant, draw_gradients, draw_noise, draw_patterns

log = logging.getLogger(__name__)

KINDS: dict[str, Kind] = {
    "font_digits": functools.partial(draw_font_glyphs, DIGITS),
    "font_letters": functools.partial(draw_font_glyphs, LETTERS),
    "font_scripts": functools.partial(draw_font_glyphs, SCRIPTS),
    "font_symbols": functools.partial(draw_font_glyphs, SYMBOLS),
    "text": draw_text,
    "scribbles": draw_scribbles,
    "shapes": draw_shapes,
    "diagrams": diagrams,
    "icons": draw_icons,
    "photos": draw_photos,
    "scientific": draw_scientific,
    "textures": draw_textures,
    "noise": draw_noise,
    "gradients": draw_gradients,
    "constant": draw_constant,
    "sklearn_digits": draw_sklearn_digits,
    "faces": draw_faces,
    "sklearn_photos": draw_sklearn_photos,
    "patterns": draw_patterns,
    "charts": charts,
}
# Held out: real handwriting (training only sees font digits made to look handwritten),
# faces and a second source of photographs, periodic patterns (no synthetic training
# kind is periodic; bricks come closest) and charts (plots, bars and pies on axes, neither
# glyphs nor digits; `diagrams` trains on other line art). They measure generalisation only.
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
    bundled = matplotlib_file("")
    system = sorted({Path(f).name for f in font_files() if not Path(f).is_relative_to(bundled)})
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

