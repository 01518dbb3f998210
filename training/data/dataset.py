"""What every data source returns: a DataSet of three Splits, or a DataError."""

from dataclasses import dataclass

import torch

from training.preprocess import Preprocessing


class DataError(RuntimeError):
    """A data problem the user can fix; the message says what is wrong and how to fix it."""


@dataclass
class Split:
    """Images (uint8, N x C x H x W, canonical form) and their labels (int64, N)."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        """Number of examples."""
        return len(self.labels)


@dataclass
class DataSet:
    """A data set ready for training: three splits, class names and provenance."""

    name: str
    classes: list[str]
    train: Split
    val: Split
    test: Split
    preprocessing: Preprocessing
    checksum: str
    source: str
    skipped: int = 0
