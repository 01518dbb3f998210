"""Drawings: handwriting-like scribbles and geometric shapes."""

import numpy as np
from PIL import Image, ImageDraw

from training.outliers.canvas import CANVAS, finish_ink, vary_pen

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


def draw_scribbles(rng: np.random.Generator, n: int) -> np.ndarray:
    """Handwriting-like strokes (Omniglot-like characters, doodles, cursive fragments)."""
    ink = np.zeros((n, CANVAS, CANVAS), np.float32)
    for i in range(n):
        ink[i] = np.asarray(_scribble(rng), np.float32) / 255
    warp = {"scale": (0.5, 1.1), "rotate": 15, "elastic": 0.03}
    return finish_ink(rng, vary_pen(rng, ink, odds=(0, 0.7, 0.3, 0)), warp=warp)


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


def draw_shapes(rng: np.random.Generator, n: int) -> np.ndarray:
    """Geometric shapes: one to four ellipses, boxes, polygons, stars, lines or arcs."""
    ink = np.zeros((n, CANVAS, CANVAS), np.float32)
    for i in range(n):
        image = Image.new("L", (CANVAS, CANVAS))
        draw = ImageDraw.Draw(image)
        for _ in range(rng.integers(1, 5)):
            _random_shape(rng, draw)
        ink[i] = np.asarray(image, np.float32) / 255
    return finish_ink(rng, ink, upload=0.3)
