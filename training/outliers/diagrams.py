"""Diagrams as outliers: tables and forms, flowcharts, floor plans, networks and codes.

Screenshots and scans of line art that is not clothing: ruled lines, boxes, arrows and
blocks laid out on a page. Each is drawn as an upload would look (dark ink on a light
page, sometimes light on dark) and passed through `training.preprocess.to_canonical`.
"""

import numpy as np
from PIL import Image, ImageDraw

from training.preprocess import FASHION_MNIST, to_canonical


def _table(draw: ImageDraw.ImageDraw, size, ink: int, rng: np.random.Generator) -> None:
    """A ruled table or form: rows and columns, a shaded header, some filled cells."""
    width, height = size
    rows, cols = int(rng.integers(3, 12)), int(rng.integers(2, 7))
    left, top = width * rng.uniform(0.02, 0.1), height * rng.uniform(0.02, 0.1)
    right, bottom = width * rng.uniform(0.9, 0.98), height * rng.uniform(0.9, 0.98)
    ys = np.linspace(top, bottom, rows + 1)
    xs = np.sort(rng.uniform(left, right, cols - 1))
    shade = int(rng.integers(90, 200)) if ink == 0 else int(rng.integers(60, 160))
    if rng.random() < 0.6:
        draw.rectangle([left, ys[0], right, ys[1]], fill=shade)
    edges = [left, *xs, right]
    for r in range(rows):
        for c in range(cols):
            if rng.random() < 0.15 and min(edges[c + 1] - edges[c], ys[r + 1] - ys[r]) > 5:
                draw.rectangle([edges[c] + 2, ys[r] + 2, edges[c + 1] - 2, ys[r + 1] - 2],
                               fill=shade)
    line = int(rng.integers(1, 3))
    for y in ys:
        draw.line([(left, y), (right, y)], fill=ink, width=line)
    for x in edges if rng.random() < 0.7 else (left, right):
        draw.line([(x, top), (x, bottom)], fill=ink, width=line)


def _arrow(draw: ImageDraw.ImageDraw, start, end, ink: int) -> None:
    """A line from `start` to `end` with a small arrowhead at `end`."""
    draw.line([start, end], fill=ink, width=2)
    direction = np.subtract(end, start) / max(np.hypot(*np.subtract(end, start)), 1e-9)
    normal = np.array([-direction[1], direction[0]])
    tip = np.array(end)
    draw.polygon([tuple(tip), tuple(tip - 7 * direction + 4 * normal),
                  tuple(tip - 7 * direction - 4 * normal)], fill=ink)


def _flowchart(draw: ImageDraw.ImageDraw, size, ink: int, rng: np.random.Generator) -> None:
    """Boxes, rounded boxes, diamonds and ellipses joined by arrows, top to bottom."""
    width, height = size
    steps = int(rng.integers(2, 6))
    columns = int(rng.integers(1, 3))
    box_w, box_h = width / (columns * 2.2), height / (steps * 2)
    centres = []
    for s in range(steps):
        for c in range(columns):
            if c and rng.random() < 0.5:
                continue
            cx = width * (c + 0.5) / columns + rng.uniform(-0.05, 0.05) * width
            cy = height * (s + 0.5) / steps
            box = [cx - box_w / 2, cy - box_h / 2, cx + box_w / 2, cy + box_h / 2]
            shape = rng.integers(4)
            fill = None if rng.random() < 0.7 else int(rng.integers(100, 220))
            if shape == 0:
                draw.rectangle(box, outline=ink, fill=fill, width=2)
            elif shape == 1:
                draw.rounded_rectangle(box, radius=box_h / 3, outline=ink, fill=fill, width=2)
            elif shape == 2:
                draw.polygon([(cx, box[1]), (box[2], cy), (cx, box[3]), (box[0], cy)],
                             outline=ink, fill=fill, width=2)
            else:
                draw.ellipse(box, outline=ink, fill=fill, width=2)
            if centres:
                px, py = centres[-1]
                _arrow(draw, (px, py + box_h / 2), (cx, cy - box_h / 2), ink)
            centres.append((cx, cy))


def _floor_plan(draw: ImageDraw.ImageDraw, size, ink: int, rng: np.random.Generator) -> None:
    """An outline split into rooms by walls, with door arcs."""
    width, height = size
    rooms = [(width * 0.05, height * 0.05, width * 0.95, height * 0.95)]
    for _ in range(int(rng.integers(2, 6))):
        x0, y0, x1, y1 = rooms.pop(int(rng.integers(len(rooms))))
        if x1 - x0 > y1 - y0:
            cut = rng.uniform(x0 + (x1 - x0) * 0.3, x1 - (x1 - x0) * 0.3)
            rooms += [(x0, y0, cut, y1), (cut, y0, x1, y1)]
        else:
            cut = rng.uniform(y0 + (y1 - y0) * 0.3, y1 - (y1 - y0) * 0.3)
            rooms += [(x0, y0, x1, cut), (x0, cut, x1, y1)]
    wall = int(rng.integers(2, 5))
    for x0, y0, x1, y1 in rooms:
        draw.rectangle([x0, y0, x1, y1], outline=ink, width=wall)
        if rng.random() < 0.6:
            r = min(x1 - x0, y1 - y0) * 0.25
            draw.arc([x0 - r, y1 - r, x0 + r, y1 + r], 270, 360, fill=ink, width=1)


def _network(draw: ImageDraw.ImageDraw, size, ink: int, rng: np.random.Generator) -> None:
    """Nodes (circles or squares) joined by edges."""
    width, height = size
    n = int(rng.integers(4, 12))
    points = np.stack([rng.uniform(0.1, 0.9, n) * width, rng.uniform(0.1, 0.9, n) * height], 1)
    for i in range(1, n):
        j = int(rng.integers(i))
        draw.line([tuple(points[i]), tuple(points[j])], fill=ink, width=int(rng.integers(1, 3)))
    radius = min(width, height) * rng.uniform(0.03, 0.07)
    square = rng.random() < 0.3
    for x, y in points:
        box = [x - radius, y - radius, x + radius, y + radius]
        fill = ink if rng.random() < 0.5 else None
        (draw.rectangle if square else draw.ellipse)(box, outline=ink, fill=fill, width=2)


def _code(draw: ImageDraw.ImageDraw, size, ink: int, rng: np.random.Generator) -> None:
    """A barcode (stripes of varied width) or a matrix code (a grid of filled squares)."""
    width, height = size
    if rng.random() < 0.5:
        x, right = width * 0.08, width * 0.92
        bottom = height * rng.uniform(0.6, 0.92)
        while x < right:
            bar = rng.uniform(1, 5)
            if rng.random() < 0.5:
                draw.rectangle([x, height * 0.08, x + bar, bottom], fill=ink)
            x += bar + rng.uniform(1, 4)
        return
    cells = int(rng.integers(11, 30))
    side = min(width, height) * 0.85
    step = side / cells
    x0, y0 = (width - side) / 2, (height - side) / 2
    filled = rng.random((cells, cells)) < 0.5
    for corner in ((0, 0), (0, cells - 7), (cells - 7, 0)):  # finder squares
        r, c = corner
        filled[r:r + 7, c:c + 7] = False
        filled[r, c:c + 7] = filled[r + 6, c:c + 7] = True
        filled[r:r + 7, c] = filled[r:r + 7, c + 6] = True
        filled[r + 2:r + 5, c + 2:c + 5] = True
    for r, c in zip(*np.nonzero(filled), strict=True):
        draw.rectangle([x0 + c * step, y0 + r * step, x0 + (c + 1) * step - 1,
                        y0 + (r + 1) * step - 1], fill=ink)


LAYOUTS = (_table, _flowchart, _floor_plan, _network, _code)


def _diagram(rng: np.random.Generator) -> Image.Image:
    """One diagram of a random layout on a page of random size."""
    width, height = (int(v) for v in rng.integers(80, 240, 2))
    light = rng.random() < 0.8
    page, ink = (int(rng.integers(215, 256)), 0) if light else (int(rng.integers(0, 40)), 255)
    image = Image.new("L", (width, height), page)
    LAYOUTS[rng.integers(len(LAYOUTS))](ImageDraw.Draw(image), (width, height), ink, rng)
    return image


def diagrams(rng: np.random.Generator, n: int) -> np.ndarray:
    """n diagrams in the data set's canonical form: uint8 (n, 28, 28)."""
    out = np.empty((n, 28, 28), np.uint8)
    for i in range(n):
        out[i] = to_canonical(_diagram(rng), FASHION_MNIST)[0]
        # A frame that fills the border would make the 28x28 image read as light on
        # dark the other way round when passed in again: draw another (about 7%).
        while not np.array_equal(to_canonical(Image.fromarray(out[i]), FASHION_MNIST)[0],
                                 out[i]):
            out[i] = to_canonical(_diagram(rng), FASHION_MNIST)[0]
    return out
