"""Synthetic images: noise, gradients, blank images, blobs and periodic patterns."""

import numpy as np

from training.outliers.canvas import SIZE, canonical_batch


def _power_noise(rng: np.random.Generator, n: int, exponent) -> np.ndarray:
    """Noise with a 1/f**exponent power spectrum, scaled to [0, 1] per image (n, 28, 28)."""
    fy, fx = np.meshgrid(np.fft.fftfreq(SIZE), np.fft.rfftfreq(SIZE), indexing="ij")
    radius = np.maximum(np.hypot(fy, fx), 1 / SIZE)
    falloff = radius ** (np.asarray(exponent) / 2)
    spectrum = np.fft.rfft2(rng.normal(size=(n, SIZE, SIZE))) / falloff
    field = np.fft.irfft2(spectrum, s=(SIZE, SIZE))
    low, high = field.min((1, 2), keepdims=True), field.max((1, 2), keepdims=True)
    return (field - low) / np.maximum(high - low, 1e-9)


def draw_noise(rng: np.random.Generator, n: int) -> np.ndarray:
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
    return canonical_batch(list(np.clip(noise, 0, 255).astype(np.uint8)))


def draw_gradients(rng: np.random.Generator, n: int) -> np.ndarray:
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
    return canonical_batch(list((low + (high - low) * ramp).astype(np.uint8)))


def draw_constant(rng: np.random.Generator, n: int) -> np.ndarray:
    """Blank images: black, white, mid-grey or any level, some with faint sensor noise."""
    named = rng.choice([0, 255, 128], n)
    level = np.where(rng.random(n) < 0.6, named, rng.uniform(0, 255, n))
    spread = np.where(rng.random(n) < 0.5, rng.uniform(0, 4, n), 0)[:, None, None]
    faint = rng.normal(0, 1, (n, SIZE, SIZE)) * spread
    image = np.clip(level[:, None, None] + faint, 0, 255)
    return canonical_batch(list(image.astype(np.uint8)))


def draw_blobs(rng: np.random.Generator, n: int) -> np.ndarray:
    """Synthetic binary blobs: smooth noise cut at a random level, in two grey levels."""
    field = _power_noise(rng, n, rng.uniform(2.5, 4.0, (n, 1, 1)))
    ranked = np.sort(field.reshape(n, SIZE * SIZE), axis=1)
    cut = ranked[np.arange(n), (rng.uniform(0.3, 0.7, n) * SIZE * SIZE).astype(int)]
    blobs = field > cut[:, None, None]
    low, high = np.sort(rng.uniform(0, 255, (2, n, 1, 1)), axis=0)
    return canonical_batch(list((low + (high - low) * blobs).astype(np.uint8)))


def draw_patterns(rng: np.random.Generator, n: int) -> np.ndarray:
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
    return canonical_batch(list(image.astype(np.uint8)))
