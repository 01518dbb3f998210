"""Write the sample images of the upload page: `python -m training.samples`.

Five Fashion-MNIST test images (the first of each chosen class) and one picture that is
not clothing, as small PNGs under web/static/samples. Needs the data set (see
docs/training.md); the web tier only serves the files.
"""

import io

import numpy as np
from PIL import Image, ImageDraw

from sieve.config import ROOT
from training.data import load_dataset

FOLDER = ROOT / "web" / "static" / "samples"
CLASSES = ("Ankle boot", "Trouser", "Bag", "Sneaker", "Dress")


def _png(image: Image.Image) -> bytes:
    """PNG bytes, as small as Pillow makes them."""
    buffer = io.BytesIO()
    image.save(buffer, "PNG", optimize=True)
    return buffer.getvalue()


def not_clothing() -> Image.Image:
    """A drawing of a house: nothing the classifier was trained on."""
    image = Image.new("L", (28, 28), 255)
    draw = ImageDraw.Draw(image)
    draw.polygon([(4, 13), (14, 4), (24, 13)], outline=0, fill=90)
    draw.rectangle([7, 13, 21, 24], outline=0, fill=200)
    draw.rectangle([12, 17, 16, 24], fill=0)
    return image


def main() -> None:
    """Write the samples, replacing older ones."""
    dataset = load_dataset()
    test, names = dataset.test, dataset.classes
    FOLDER.mkdir(parents=True, exist_ok=True)
    for wanted in CLASSES:
        index = next(i for i, label in enumerate(test.labels) if names[int(label)] == wanted)
        array = test.images[index, 0].numpy().astype(np.uint8)
        slug = wanted.lower().replace(" ", "-")
        (FOLDER / f"{slug}.png").write_bytes(_png(Image.fromarray(array)))
    (FOLDER / "house-not-clothing.png").write_bytes(_png(not_clothing()))


if __name__ == "__main__":
    main()
