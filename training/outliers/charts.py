"""Charts as outliers: line plots, bar charts, scatter plots and pie charts, drawn offline.

People upload screenshots of charts by mistake; none of them is clothing. Each chart is
drawn as an upload would look (dark ink on a light page, sometimes light on dark),
with axes and tick marks but no text, and passed through `training.preprocess.to_canonical`.
"""

import numpy as np
from PIL import Image, ImageDraw

from training.preprocess import FASHION_MNIST, to_canonical


def _axes(draw: ImageDraw.ImageDraw, box, ink: int, rng: np.random.Generator) -> None:
    """An x and a y axis with tick marks, and sometimes a light grid."""
    left, top, right, bottom = box
    draw.line([(left, top), (left, bottom), (right, bottom)], fill=ink, width=2)
    ticks = int(rng.integers(4, 9))
    grid = rng.random() < 0.4
    for t in np.linspace(0, 1, ticks):
        x, y = left + t * (right - left), bottom - t * (bottom - top)
        draw.line([(x, bottom), (x, bottom + 4)], fill=ink, width=1)
        draw.line([(left - 4, y), (left, y)], fill=ink, width=1)
        if grid and t > 0:
            draw.line([(left, y), (right, y)], fill=ink // 2 + 64, width=1)


def _chart(rng: np.random.Generator) -> Image.Image:
    """One chart of a random type on a page of random size."""
    width, height = (int(v) for v in rng.integers(90, 240, 2))
    light = rng.random() < 0.8
    page, ink = (int(rng.integers(215, 256)), 0) if light else (int(rng.integers(0, 40)), 255)
    image = Image.new("L", (width, height), page)
    draw = ImageDraw.Draw(image)
    box = (width * 0.12, height * 0.08, width * 0.95, height * 0.85)
    left, top, right, bottom = box
    kind = rng.integers(4)
    shades = [int(v) for v in rng.integers(0, 200, 8)] if light else \
        [int(v) for v in rng.integers(80, 256, 8)]
    if kind == 3:  # pie chart with a legend of swatches
        cx, cy, r = width * 0.4, height / 2, min(width, height) * 0.35
        cuts = np.sort(rng.uniform(0, 360, int(rng.integers(3, 7))))
        for i, (a, b) in enumerate(zip(cuts, np.roll(cuts, -1), strict=True)):
            draw.pieslice([cx - r, cy - r, cx + r, cy + r], a, b if b > a else b + 360,
                          fill=shades[i], outline=page)
        for i in range(len(cuts)):
            y = height * 0.2 + i * 10
            draw.rectangle([width * 0.82, y, width * 0.82 + 7, y + 7], fill=shades[i])
        return image
    _axes(draw, box, ink, rng)
    count = int(rng.integers(5, 16))
    xs = np.linspace(left + 6, right - 6, count)
    if kind == 0:  # bar chart
        heights = rng.uniform(0.1, 1, count) * (bottom - top)
        half = (xs[1] - xs[0]) * rng.uniform(0.2, 0.45)
        for i, (x, h) in enumerate(zip(xs, heights, strict=True)):
            draw.rectangle([x - half, bottom - h, x + half, bottom - 1], fill=shades[i % 3])
    elif kind == 1:  # line plot: one to three series
        for s in range(int(rng.integers(1, 4))):
            walk = np.cumsum(rng.normal(0, 1, count * 3))
            walk = (walk - walk.min()) / max(np.ptp(walk), 1e-9)
            points = np.linspace(left + 2, right - 2, count * 3)
            ys = bottom - 4 - walk * (bottom - top - 8)
            draw.line(list(zip(points, ys, strict=True)), fill=shades[s], width=2)
    else:  # scatter plot
        n = int(rng.integers(15, 80))
        px = rng.uniform(left + 4, right - 4, n)
        py = np.clip(bottom - (px - left) * rng.uniform(-0.5, 1) - rng.normal(0, 20, n),
                     top, bottom - 3)
        for x, y in zip(px, py, strict=True):
            draw.ellipse([x - 2, y - 2, x + 2, y + 2], fill=shades[0])
    return image


def charts(rng: np.random.Generator, n: int) -> np.ndarray:
    """n charts in the data set's canonical form: uint8 (n, 28, 28)."""
    out = np.empty((n, 28, 28), np.uint8)
    for i in range(n):
        out[i] = to_canonical(_chart(rng), FASHION_MNIST)[0]
    return out
