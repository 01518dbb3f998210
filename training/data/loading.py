"""Pick the data source the arguments and settings name, and load it."""

import os
from pathlib import Path

from sieve.config import Settings, get_settings
from training.data.archives import archive_stem, load_archive
from training.data.dataset import DataSet
from training.data.fashion import has_fashion_files, load_fashion_mnist
from training.data.folders import load_image_folder


def load_dataset(
    data_dir: str | os.PathLike | None = None,
    data_url: str | None = None,
    download: bool = False,
    val_size: int = 5000,
    seed: int = 0,
    image_size: int = 64,
    settings: Settings | None = None,
) -> DataSet:
    """Load the data set the arguments and settings name; Fashion-MNIST by default.

    `val_size` and `seed` apply to Fashion-MNIST only; `image_size` to image folders only.
    """
    settings = settings or get_settings()
    if data_dir is not None:
        folder = Path(data_dir)
        if has_fashion_files(folder):
            return load_fashion_mnist(folder, val_size=val_size, seed=seed)
        return load_image_folder(folder, image_size=image_size)
    url = data_url or settings.data_url
    if archive_stem(url) is not None:
        return load_archive(url, settings, download=download, image_size=image_size)
    return load_fashion_mnist(
        settings=settings, url=url, download=download, val_size=val_size, seed=seed
    )
