"""Data-set images rendered the ways people upload pictures, for training and evaluation.

Each kind is a named `Rendering` with its parameters in code. Rendering a 28x28
canonical image (light garment on black) gives an encoded file (PNG or JPEG bytes) as a
person would upload it; `canonical` then decodes it and runs `to_canonical`, the path
every upload takes when it is served. The set is deterministic: image i of kind k under
a seed is always the same bytes.

No package installed here ships photographs of clothing, so every kind is a rendering
of Fashion-MNIST images.

Usage::

    python -m training.uploads --preview uploads.png
"""

import argparse
import io
import logging
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageFilter

from training.preprocess import FASHION_MNIST, Preprocessing, load_image, to_canonical

log = logging.getLogger(__name__)

RESAMPLING = (Image.Resampling.NEAREST, Image.Resampling.BILINEAR, Image.Resampling.BICUBIC,
              Image.Resampling.LANCZOS)


@dataclass(frozen=True)
class Rendering:
    """How one kind of upload is made from a data-set image; ranges are drawn per image."""

    name: str
    side: tuple[int, int] = (28, 28)  # longest side of the garment, in pixels
    aspect: tuple[float, float] = (1.0, 1.0)  # picture width / height
    margin: tuple[float, float] = (0.0, 0.0)  # free space around the garment, share of side
    off_centre: float = 0.0  # largest shift of the garment, share of the free space
    light_background: float = 0.0  # share of images as a dark garment on a light background
    dark_level: tuple[float, float] = (0.0, 15.0)  # grey level of a dark background
    colour: bool = False  # tinted garment on a coloured background
    rotate: float = 0.0  # largest rotation in degrees
    blur: tuple[float, float] = (0.0, 0.0)  # Gaussian blur radius, in garment pixels / 28
    noise: tuple[float, float] = (0.0, 0.0)  # sensor noise, standard deviation in grey levels
    lighting: tuple[float, float] = (0.0, 0.0)  # brightness falloff across the picture
    jpeg: tuple[int, int] | None = None  # JPEG quality range; None: PNG


KINDS: dict[str, Rendering] = {r.name: r for r in (
    Rendering("plain", dark_level=(0.0, 0.0)),
    Rendering("enlarged", side=(56, 400)),
    Rendering("aspect", side=(100, 300), aspect=(0.6, 1.7), margin=(0.05, 0.2)),
    Rendering("jpeg", side=(80, 300), jpeg=(50, 95)),
    Rendering("product_photo", side=(150, 400), margin=(0.03, 0.15), light_background=1.0,
              jpeg=(75, 95)),
    Rendering("colour", side=(100, 300), margin=(0.03, 0.15), colour=True,
              light_background=0.5, jpeg=(80, 95)),
    Rendering("margin", side=(60, 250), margin=(0.15, 0.6), off_centre=0.9,
              light_background=0.5),
    Rendering("rotated", side=(100, 300), margin=(0.05, 0.15), off_centre=0.5, rotate=15.0,
              light_background=0.5),
    Rendering("blur_noise", side=(80, 300), margin=(0.02, 0.1), blur=(0.3, 0.8),
              noise=(2.0, 8.0), light_background=0.5, jpeg=(85, 95)),
    Rendering("uneven_light", side=(100, 300), margin=(0.05, 0.15), lighting=(0.15, 0.35),
              light_background=1.0, jpeg=(85, 95)),
)}
# Kinds that change the picture, not only its encoding: what the filter's threshold is
# calibrated on, and what training renders, in turn. Blurred pictures lose the fine
# texture that tells clothing from smooth outliers (blobs, clouds, blurred shapes), so
# training renders them twice as often as the others.
RENDERED_KINDS: tuple[str, ...] = tuple(k for k in KINDS if k != "plain")
TRAIN_KINDS: tuple[str, ...] = (*RENDERED_KINDS, "blur_noise")
# Largest garment side of training renders (small: faster, and alike once at 28x28).
TRAIN_SIDE = 84
# Validation images rendered per upload kind, at full size, to calibrate the filter on.
CALIBRATION_PER_KIND = 500


def _rng(seed: int, kind: str, index: int) -> np.random.Generator:
    """A generator per image, so that image i of a kind never depends on the others."""
    return np.random.default_rng([seed, zlib.crc32(kind.encode()), index])


def _uniform(rng: np.random.Generator, span: tuple[float, float]) -> float:
    """A draw from [low, high] (the low end when the span is empty)."""
    return float(span[0]) if span[0] == span[1] else float(rng.uniform(*span))


def _garment(rng: np.random.Generator, image: np.ndarray, r: Rendering,
             max_side: int | None) -> Image.Image:
    """The 28x28 image enlarged so that its longest side is `side` (at most `max_side`)."""
    side = int(rng.integers(r.side[0], r.side[1] + 1))
    side = min(side, max(max_side or side, image.shape[0]))
    picture = Image.fromarray(image)
    if side != image.shape[0]:
        picture = picture.resize((side, side), RESAMPLING[rng.integers(len(RESAMPLING))])
    if r.rotate:
        angle = rng.uniform(-r.rotate, r.rotate)
        picture = picture.rotate(angle, Image.Resampling.BICUBIC, expand=True)
    return picture


def _canvas(rng: np.random.Generator, garment: Image.Image, r: Rendering) -> np.ndarray:
    """The garment (light on black) placed on a picture with margins and another aspect."""
    side = max(garment.size)
    margin = _uniform(rng, r.margin) * side
    aspect = np.exp(_uniform(rng, tuple(np.log(r.aspect))))
    height = width = side + 2 * margin
    if aspect >= 1:
        width = max(width, height * aspect)
    else:
        height = max(height, width / aspect)
    width, height = round(width), round(height)
    if (width, height) == garment.size:
        return np.asarray(garment, np.float32)
    room_x, room_y = width - garment.width, height - garment.height
    x = room_x / 2 * (1 + r.off_centre * rng.uniform(-1, 1))
    y = room_y / 2 * (1 + r.off_centre * rng.uniform(-1, 1))
    canvas = Image.new("L", (width, height), 0)
    canvas.paste(garment, (round(x), round(y)))
    return np.asarray(canvas, np.float32)


def _shade(rng: np.random.Generator, ink: np.ndarray, r: Rendering) -> np.ndarray:
    """Garment and background colours, lighting and noise: (H, W, 3) floats in [0, 255]."""
    mask = ink[..., None] / 255.0
    light = rng.random() < r.light_background
    if r.colour:
        background = rng.uniform(200, 255, 3) if light else rng.uniform(0, 90, 3)
        garment = rng.uniform(0, 1, 3) ** 0.5
        garment = garment / garment.max() * (rng.uniform(20, 110) if light else 255)
    else:
        level = rng.uniform(225, 255) if light else _uniform(rng, r.dark_level)
        background, garment = np.full(3, level), np.full(3, 0.0 if light else 255.0)
    if light and not r.colour:
        # A dark garment: the data set's light pixels are its darkest ones.
        picture = background - (background - garment) * mask
    else:
        picture = background + (garment - background) * mask
    if r.lighting[1]:
        h, w = ink.shape
        angle = rng.uniform(0, 2 * np.pi)
        y, x = np.mgrid[0:h, 0:w]
        ramp = (x / w - 0.5) * np.cos(angle) + (y / h - 0.5) * np.sin(angle)
        picture = picture * (1 - _uniform(rng, r.lighting) * (ramp + 0.5))[..., None]
    if r.noise[1]:
        picture = picture + rng.normal(0, _uniform(rng, r.noise), picture.shape)
    return np.clip(picture, 0, 255)


def render(image: np.ndarray, kind: str, seed: int = 0, index: int = 0,
           max_side: int | None = None) -> bytes:
    """Image `index` of `kind`: the encoded file a person would upload (PNG or JPEG bytes).

    `max_side` caps the garment's size in pixels (training renders small pictures: faster,
    and the same once brought back to 28x28).
    """
    r = KINDS[kind]
    rng = _rng(seed, kind, index)
    garment = _garment(rng, np.asarray(image, np.uint8).reshape(28, 28), r, max_side)
    picture = _shade(rng, _canvas(rng, garment, r), r)
    out = Image.fromarray(picture.round().astype(np.uint8), "RGB")
    if not r.colour and not r.lighting[1] and not r.noise[1]:
        out = out.convert("L")
    if r.blur[1]:
        radius = _uniform(rng, r.blur) * max(garment.size) / 28
        out = out.filter(ImageFilter.GaussianBlur(radius))
    buffer = io.BytesIO()
    if r.jpeg:
        out.save(buffer, "JPEG", quality=int(rng.integers(r.jpeg[0], r.jpeg[1] + 1)))
    else:
        out.save(buffer, "PNG")
    return buffer.getvalue()


def canonical(data: bytes, prep: Preprocessing = FASHION_MNIST) -> np.ndarray:
    """What serving makes of an uploaded file: decode, then `to_canonical`."""
    return to_canonical(load_image(data), prep)


def render_canonical(images: torch.Tensor, kinds: Sequence[str], seed: int = 0,
                     prep: Preprocessing = FASHION_MNIST,
                     max_side: int | None = None) -> torch.Tensor:
    """Each image rendered as one of `kinds` (in turn) and brought back as serving does."""
    out = np.empty((len(images), prep.channels, prep.size, prep.size), np.uint8)
    for i, image in enumerate(images.numpy()):
        data = render(image[0], kinds[i % len(kinds)], seed, i, max_side)
        out[i] = canonical(data, prep)
    return torch.from_numpy(out)


def training_renders(images: torch.Tensor, prep: Preprocessing, share: float,
                     seed: int) -> torch.Tensor:
    """The first `share` of `images` rendered as uploads of the training kinds, in turn, as
    serving sees them. Only the Fashion-MNIST preset has renderings: others get none."""
    count = int(len(images) * share)
    if prep != FASHION_MNIST or count == 0:
        return images[:0]
    return render_canonical(images[:count], TRAIN_KINDS, seed, prep, max_side=TRAIN_SIDE)


def evaluation_set(images: torch.Tensor, seed: int = 0, per_kind: int = 1000,
                   kinds: Sequence[str] = tuple(KINDS)) -> dict[str, tuple[torch.Tensor, slice]]:
    """For each kind, the first `per_kind` images rendered and brought back as serving does.

    Returns kind -> (canonical uint8 (n, 1, 28, 28), the slice of `images` they come from).
    """
    chosen = slice(0, min(per_kind, len(images)))
    return {kind: (render_canonical(images[chosen], [kind], seed), chosen) for kind in kinds}


def calibration_set(images: torch.Tensor, prep: Preprocessing, seed: int,
                    per_kind: int = CALIBRATION_PER_KIND) -> dict[str, torch.Tensor]:
    """Validation images rendered as each of `RENDERED_KINDS`, as people upload them
    (full size) and brought back as serving does: kind -> canonical images. Only the
    Fashion-MNIST preset has renderings: others get none."""
    if prep != FASHION_MNIST or per_kind <= 0:
        return {}
    rendered = evaluation_set(images, seed, per_kind, RENDERED_KINDS)
    return {kind: canonical for kind, (canonical, _) in rendered.items()}


def preview(path, images: torch.Tensor, per_kind: int = 12, seed: int = 0) -> None:
    """A PNG grid: per kind, uploads as rendered (top) and as the models see them (below)."""
    from matplotlib.figure import Figure  # Agg canvas, no pyplot state

    figure = Figure(figsize=(per_kind * 0.7 + 1.6, len(KINDS) * 1.3))
    axes = figure.subplots(2 * len(KINDS), per_kind, squeeze=False)
    for k, kind in enumerate(KINDS):
        for i in range(per_kind):
            data = render(images[i, 0].numpy(), kind, seed, i)
            upload = load_image(data).convert("RGB")
            axes[2 * k, i].imshow(upload)
            axes[2 * k + 1, i].imshow(canonical(data)[0], cmap="gray", vmin=0, vmax=255)
        axes[2 * k, 0].set_ylabel(kind, rotation=0, ha="right", va="center", fontsize=8)
    for ax in axes.ravel():
        ax.set_xticks([]), ax.set_yticks([])
    figure.savefig(path, dpi=80)
    log.info("wrote %s", path)


def main(argv: list[str] | None = None) -> None:
    """Write a preview of every kind rendered from Fashion-MNIST test images."""
    from training.data import load_dataset

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preview", metavar="PATH", required=True,
                        help="write a PNG grid of uploads and their canonical form")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    args = parser.parse_args(argv)
    preview(args.preview, load_dataset().test.images, seed=args.seed)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    main()
