"""The shared preprocessing: one tensor per image whatever the entry point, clear errors."""

import io
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from training.preprocess import (
    FASHION_MNIST,
    MAX_PIXELS,
    ImageError,
    Preprocessing,
    folder_preprocessing,
    load_image,
    preprocess,
    to_canonical,
    to_tensor,
)


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def _item() -> np.ndarray:
    """A Fashion-MNIST-like 28x28 image: a light T-shape on black."""
    array = np.zeros((28, 28), np.uint8)
    array[3:9, 2:26] = 200
    array[9:26, 9:19] = 230
    return array


def test_same_tensor_from_every_entry_point(tmp_path, fashion_test_images):
    """Array from the data files, PNG bytes, a path, PIL gray, RGB and RGBA all agree."""
    for array in fashion_test_images[:50]:
        expected = to_tensor(array[None].copy())
        image = Image.fromarray(array)
        path = tmp_path / "item.png"
        image.save(path)
        sources = [_png(image), path, str(path), image, image.convert("RGB"),
                   image.convert("RGBA"), _png(image.convert("RGB"))]
        for source in sources:
            assert torch.equal(preprocess(source), expected), type(source)


def test_product_photo_becomes_dataset_form():
    """A dark object on a light, larger photo: inverted, trimmed, centred, filling 28."""
    photo = Image.new("RGB", (640, 480), (245, 245, 240))
    photo.paste(Image.new("RGB", (120, 300), (40, 60, 90)), (200, 100))
    canonical = to_canonical(photo)
    assert canonical.shape == (1, 28, 28) and canonical.dtype == np.uint8
    gray = canonical[0]
    assert gray[0, 0] == 0 and gray[-1, -1] == 0  # dark background
    assert gray[14, 14] > 150  # light object in the middle
    rows = np.flatnonzero(gray.max(axis=1) > 13)
    cols = np.flatnonzero(gray.max(axis=0) > 13)
    assert rows[0] == 0 and rows[-1] == 27  # the longest side fills the frame
    assert abs((cols[0] + cols[-1]) / 2 - 13.5) <= 1  # centred


def test_transparent_png_is_composited_on_white():
    """A cut-out product on a transparent background looks like one on white."""
    cutout = Image.new("RGBA", (200, 200), (0, 0, 0, 0))
    cutout.paste(Image.new("RGBA", (80, 160), (30, 30, 30, 255)), (60, 20))
    on_white = Image.new("RGB", (200, 200), (255, 255, 255))
    on_white.paste(Image.new("RGB", (80, 160), (30, 30, 30)), (60, 20))
    assert np.array_equal(to_canonical(cutout), to_canonical(on_white))


def test_grayscale_and_16_bit_inputs():
    """Mode L at another size and a 16-bit PNG are both accepted."""
    big = Image.fromarray(_item()).resize((112, 112))
    assert to_canonical(big).shape == (1, 28, 28)
    sixteen = Image.fromarray(_item().astype(np.uint16) * 257)
    assert to_canonical(load_image(_png(sixteen))).max() > 200


def test_folder_preset_gives_rgb_squares():
    """Image-folder data: RGB, resized and centre-cropped to the preset size."""
    prep = folder_preprocessing(64)
    photo = Image.new("RGB", (300, 200), (10, 200, 30))
    canonical = to_canonical(photo, prep)
    assert canonical.shape == (3, 64, 64)
    assert tuple(canonical[:, 32, 32]) == (10, 200, 30)
    assert preprocess(photo, prep).shape == (3, 64, 64)


def test_preprocessing_round_trips_through_a_card():
    """The dict stored in model cards rebuilds the same preprocessing."""
    for prep in (FASHION_MNIST, folder_preprocessing(96)):
        assert Preprocessing.from_dict(prep.to_dict()) == prep


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _bomb_png(width: int, height: int) -> bytes:
    """A tiny PNG that claims a huge size (it must be refused before any decoding)."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header)
            + _chunk(b"IDAT", zlib.compress(b"")) + _chunk(b"IEND", b""))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"hello, this is text", "not an image"),
        (_png(Image.fromarray(_item()))[:60], "damaged or truncated"),
        (_bomb_png(20000, 20000), "too large"),
    ],
    ids=["empty", "text", "truncated", "bomb"],
)
def test_bad_images_raise_clear_errors(data, message):
    """Broken uploads raise ImageError with a message a person can act on."""
    with pytest.raises(ImageError, match=message):
        preprocess(data)


def test_pixel_limit_is_enforced_before_decoding():
    """Images just above the limit are refused without decoding."""
    side = int(MAX_PIXELS**0.5) + 10
    with pytest.raises(ImageError, match="at most"):
        load_image(_bomb_png(side, side))


def test_to_tensor_normalises_batches_and_single_images():
    """Single (C,H,W) and batched (N,C,H,W) inputs give matching values."""
    batch = torch.from_numpy(np.stack([_item()[None], 255 - _item()[None]]))
    assert torch.equal(to_tensor(batch)[1], to_tensor(batch[1]))
    assert torch.allclose(to_tensor(batch).mean(), torch.tensor(0.0), atol=2.5)
    with pytest.raises(TypeError):
        to_tensor(batch.float())


@pytest.mark.parametrize("resample", [Image.Resampling.NEAREST, Image.Resampling.BILINEAR,
                                      Image.Resampling.BICUBIC])
@pytest.mark.parametrize("side", [56, 84, 140, 200])
def test_enlarged_dataset_image_maps_back_close_to_the_original(fashion_test_images,
                                                                resample, side):
    """A data-set image enlarged (2x to 7x) and uploaded as PNG comes back close to itself:
    same place, same size, differing only by what the resampling blurred."""
    originals = fashion_test_images[:100]
    canonical = np.stack([preprocess_upload(Image.fromarray(a).resize((side, side), resample))
                          for a in originals]).astype(np.float32)
    difference = np.abs(canonical - originals).mean(axis=(1, 2))
    # Shifting the original by one pixel differs by about 25 grey levels on average.
    shifted = np.abs(np.roll(originals, 1, axis=2).astype(np.float32) - originals).mean()
    bound = 7 if resample == Image.Resampling.NEAREST else 15
    assert difference.mean() < bound < shifted
    assert np.median(difference) < bound


def preprocess_upload(image: Image.Image) -> np.ndarray:
    """What serving makes of the image uploaded as a PNG file."""
    return to_canonical(load_image(_png(image)))[0]


def test_faint_upload_is_stretched_to_the_datasets_levels(fashion_test_images):
    """A data-set image at a third of its contrast (a tinted garment on a dark coloured
    background), enlarged, comes back with a white pixel and close to the original."""
    originals = fashion_test_images[:50]
    faint = [Image.fromarray((a // 3).astype(np.uint8)).resize((112, 112),
                                                               Image.Resampling.NEAREST)
             for a in originals]
    canonical = np.stack([to_canonical(image)[0] for image in faint])
    assert canonical.max(axis=(1, 2)).min() > 200  # the faint upload's brightest is 85
    difference = np.abs(canonical.astype(np.float32) - originals).mean(axis=(1, 2))
    # As close as the same enlargement at full contrast comes back (about 4.6 levels);
    # left faint, it would differ by about 47.
    assert difference.mean() < 7, difference.mean()
    blank = to_canonical(Image.new("L", (64, 64), 5))
    assert blank.max() <= 13  # nothing to stretch: a blank picture stays blank


def test_light_falling_off_across_a_product_photo_is_levelled(fashion_test_images):
    """A dark garment on white, enlarged and lit unevenly (a third less light on one side
    than the other), comes back as close to the original as the evenly lit photo."""
    originals = fashion_test_images[:50]
    y, x = np.mgrid[0:140, 0:140]
    falloff = 1 - 0.35 * (0.6 * x + 0.8 * y) / 140 / 1.4

    def photo(image: np.ndarray, light: np.ndarray) -> Image.Image:
        """The image enlarged into a 140x140 product photo (dark on white) under `light`."""
        enlarged = np.asarray(Image.fromarray(image).resize((112, 112)), np.float32)
        picture = np.full((140, 140), 250.0)
        picture[14:126, 14:126] -= enlarged * 250 / 255
        return Image.fromarray(np.clip(picture * light, 0, 255).round().astype(np.uint8))

    def difference(light: np.ndarray) -> float:
        """Mean grey-level difference to the originals after the serving path."""
        canonical = np.stack([preprocess_upload(photo(a, light)) for a in originals])
        return float(np.abs(canonical.astype(np.float32) - originals).mean())

    even, uneven = difference(np.ones((140, 140))), difference(falloff)
    # Levelled by the ring's median alone, the uneven photo differs by about 46 levels.
    assert uneven < even + 2, (even, uneven)
    assert even < 15
