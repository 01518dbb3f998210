"""Data sets for training: Fashion-MNIST (IDX files) and image folders (train/val[/test]).

`load_dataset` picks the source: an image folder (`data_dir`), an archive of one
(`data_url` ending in .zip, .tar, .tar.gz or .tgz), or Fashion-MNIST by default,
read from Debian's `dataset-fashion-mnist` files or downloaded from `DATA_URL`.
Every split holds uint8 images of shape (N, C, H, W) in canonical form.

Modules: `dataset` (DataSet, Split, DataError), `fashion` (Fashion-MNIST and its IDX
files), `downloads`, `archives`, `folders` (image folders) and `loading` (`load_dataset`).
"""

from training.data.archives import extract_archive
from training.data.dataset import DataError, DataSet, Split
from training.data.downloads import download
from training.data.fashion import CLASSES_FASHION, FASHION_SHA256, load_fashion_mnist, parse_idx
from training.data.folders import load_image_folder
from training.data.loading import load_dataset

__all__ = [
    "CLASSES_FASHION",
    "FASHION_SHA256",
    "DataError",
    "DataSet",
    "Split",
    "download",
    "extract_archive",
    "load_dataset",
    "load_fashion_mnist",
    "load_image_folder",
    "parse_idx",
]
