"""The filter's data and report: in-domain images against outliers, threshold, AUROC.

The filter is a yes/no model: label 1 for images of the data set (in-domain), 0 for
outliers. It trains on the outlier kinds in `outliers.TRAIN_KINDS`; the kinds in
`outliers.HELD_OUT_KINDS` are never seen in training and measure how the filter does on
outliers it has never met. In-domain images are the data set's own plus, for the
Fashion-MNIST preset, a share of them rendered as uploads (`training.uploads`: enlarged,
JPEG, dark on white, coloured, rotated, ...) and brought back by the serving path. The
decision threshold is picked on validation images: the highest that accepts a chosen share
of the plain ones and another chosen share of each kind of upload (`uploads.calibration_set`),
so that no kind of upload is turned away much more often than the others.
"""

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from training import outliers, uploads
from training.data import DataSet, Split
from training.metrics import auroc, threshold_for_acceptance
from training.preprocess import Preprocessing, to_canonical


@dataclass
class FilterData:
    """Binary splits for the filter, and outliers by kind for the report."""

    train: Split
    val: Split
    test_in_domain: torch.Tensor
    test_outliers: dict[str, torch.Tensor]
    calibration: dict[str, torch.Tensor]  # upload kind -> validation images rendered as it


def _outliers(kinds, n: int, seed: int, prep: Preprocessing) -> torch.Tensor:
    """Outlier images in the data set's canonical form."""
    images = outliers.make_outliers(kinds, n, seed)
    if prep.mode == "L" and prep.size == images.shape[-1]:
        return images
    # Other presets (RGB photos): convert each outlier the way an upload is converted.
    converted = [to_canonical(Image.fromarray(img[0].numpy()), prep) for img in images]
    return torch.from_numpy(np.stack(converted))


def _negatives(n: int, seed: int, prep: Preprocessing, upload_share: float) -> torch.Tensor:
    """n outliers of the training kinds plus the same share of them rendered as uploads,
    exactly as the in-domain images are: the rendering itself tells the filter nothing."""
    plain = _outliers(outliers.TRAIN_KINDS, n, seed, prep)
    return torch.cat([plain, uploads.training_renders(plain, prep, upload_share, seed)])


def _binary(in_domain: torch.Tensor, negatives: torch.Tensor) -> Split:
    """In-domain images labelled 1 followed by outliers labelled 0."""
    labels = torch.cat([torch.ones(len(in_domain)), torch.zeros(len(negatives))]).long()
    return Split(torch.cat([in_domain, negatives]), labels)


def filter_data(data: DataSet, seed: int, ratio: float = 1.0, per_kind: int = 1000,
                upload_share: float = 0.25,
                calibration_per_kind: int = uploads.CALIBRATION_PER_KIND) -> FilterData:
    """Assemble train/val splits, the per-kind test outliers and the calibration uploads.

    `upload_share`: rendered uploads added per in-domain image, in training and validation;
    `calibration_per_kind`: validation images rendered per upload kind for the threshold.
    """
    prep = data.preprocessing
    train_in = torch.cat([data.train.images,
                          uploads.training_renders(data.train.images, prep, upload_share, seed)])
    val_in = torch.cat([data.val.images,
                        uploads.training_renders(data.val.images, prep, upload_share,
                                                 seed + 1)])
    train_neg = _negatives(max(1, int(len(data.train.images) * ratio)), seed, prep,
                           upload_share)
    val_neg = _negatives(len(data.val.images), seed + 1, prep, upload_share)
    return FilterData(
        train=_binary(train_in, train_neg),
        val=_binary(val_in, val_neg),
        test_in_domain=data.test.images,
        test_outliers=test_outliers(prep, seed, per_kind),
        calibration=uploads.calibration_set(data.val.images, prep, seed + 1,
                                            calibration_per_kind),
    )


def test_outliers(prep: Preprocessing, seed: int, per_kind: int = 1000) -> dict:
    """Fresh outliers of every kind, held-out kinds first, for the test report."""
    kinds = outliers.HELD_OUT_KINDS + outliers.TRAIN_KINDS
    return {kind: _outliers([kind], per_kind, seed + 2 + i, prep) for i, kind in enumerate(kinds)}


def pick_threshold(val_in_scores: torch.Tensor, accept: float,
                   upload_scores: dict[str, torch.Tensor] | None = None,
                   upload_accept: float = 1.0) -> float:
    """The highest threshold that accepts the share `accept` of in-domain validation images
    and the share `upload_accept` of each kind's validation uploads in `upload_scores`."""
    return min([threshold_for_acceptance(val_in_scores, accept),
                *(threshold_for_acceptance(s, upload_accept)
                  for s in (upload_scores or {}).values())])


def report(in_scores: torch.Tensor, outlier_scores: dict[str, torch.Tensor],
           threshold: float) -> dict:
    """Acceptance of in-domain images, rejection rates and AUROC per outlier kind."""
    held_out = [outlier_scores[k] for k in outliers.HELD_OUT_KINDS]
    kinds = {
        kind: {
            "held_out": kind in outliers.HELD_OUT_KINDS,
            "rejection_rate": float((scores < threshold).float().mean()),
            "auroc": auroc(in_scores, scores),
        }
        for kind, scores in outlier_scores.items()
    }
    return {
        "threshold": threshold,
        "in_domain_acceptance": float((in_scores >= threshold).float().mean()),
        "held_out_auroc": auroc(in_scores, torch.cat(held_out)),
        "held_out_rejection_rate": float((torch.cat(held_out) < threshold).float().mean()),
        "kinds": kinds,
    }
