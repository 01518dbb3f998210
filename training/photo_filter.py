"""The filter for photo domains (image folders): the domain's photos against "not my domain".

Negatives come from two places:

- the user's own pictures of what the service must turn away (`--outliers-dir`, any
  folder of images), split by a seeded draw into training, validation and held-out test
  shares;
- the generic outlier kinds of `training.outliers` (text, shapes, icons, textures,
  photos, ...) rendered in colour at the domain's size: each drawing's ink and paper get
  a random colour pair, some sensor noise, and any resampling, then the serving path
  (`preprocess.to_canonical`) brings them in. In colour and at full size, "grey" or
  "blurry" tells the filter nothing.

The threshold is picked on validation images so that the share `--accept-rate` of the
domain's photos is accepted. Acceptance is then measured on in-domain photos the
threshold never saw (the test split, or, when the data set has none, the other half of
its validation photos), and AUROC on held-out negatives: the outlier kinds never used in
training and the held-out share of the user's pictures.
"""

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from training import outliers
from training.data import DataError, DataSet, Split
from training.engine import predict
from training.metrics import auroc, threshold_for_acceptance
from training.preprocess import ImageError, Preprocessing, decode, to_canonical

log = logging.getLogger(__name__)

USER_KIND = "outliers_dir"  # the user's own negatives, in the report
RESAMPLING = (Image.Resampling.NEAREST, Image.Resampling.BILINEAR, Image.Resampling.BICUBIC)
SHARES = (0.6, 0.2)  # training and validation shares of the user's negatives; rest: test


@dataclass
class PhotoFilterData:
    """Binary splits for a photo filter, and what the report measures."""

    train: Split
    val: Split
    accept_in: torch.Tensor  # in-domain photos the threshold never sees
    test_outliers: dict[str, torch.Tensor]
    held_out: tuple[str, ...] = field(default=outliers.HELD_OUT_KINDS)


def colour_outliers(kinds, n: int, seed: int, prep: Preprocessing) -> torch.Tensor:
    """n generic outliers drawn in random colour pairs at the domain's size, canonical."""
    grey = outliers.make_outliers(kinds, n, seed).numpy()
    rng = np.random.default_rng([seed, 21])
    out = np.empty((n, prep.channels, prep.size, prep.size), np.uint8)
    for i, image in enumerate(grey):
        ink = Image.fromarray(image[0]).resize((prep.size, prep.size),
                                               RESAMPLING[rng.integers(len(RESAMPLING))])
        mask = np.asarray(ink, np.float32)[..., None] / 255.0
        paper, colour = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
        picture = paper + (colour - paper) * mask
        picture += rng.normal(0, rng.uniform(0, 8), picture.shape)
        rgb = Image.fromarray(np.clip(picture, 0, 255).round().astype(np.uint8), "RGB")
        out[i] = to_canonical(rgb, prep)
    return torch.from_numpy(out)


def read_outliers_dir(folder: str | Path, prep: Preprocessing) -> torch.Tensor:
    """Every readable image below `folder` (hidden files skipped), in canonical form."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"--outliers-dir {folder} is not a folder")
    arrays, skipped = [], 0
    for path in sorted(folder.rglob("*")):
        if not path.is_file() or any(p.startswith(".") for p in path.relative_to(folder).parts):
            continue
        try:
            arrays.append(to_canonical(decode(path.read_bytes(), prep), prep))
        except (ImageError, OSError):  # not an image, damaged, or unreadable: skipped
            skipped += 1
    if len(arrays) < 5:
        raise DataError(f"--outliers-dir {folder} has {len(arrays)} readable images; give it "
                        "at least 5 pictures of what the filter must turn away")
    if skipped:
        log.warning("skipped %d unreadable file(s) under %s", skipped, folder)
    return torch.from_numpy(np.stack(arrays))


def _thirds(images: torch.Tensor, seed: int) -> tuple[torch.Tensor, ...]:
    """A seeded split into training, validation and test shares (`SHARES`)."""
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))
    first = int(len(images) * SHARES[0])
    second = first + max(1, int(len(images) * SHARES[1]))
    return images[order[:first]], images[order[first:second]], images[order[second:]]


def _binary(in_domain: torch.Tensor, negatives: torch.Tensor) -> Split:
    """In-domain images labelled 1 followed by negatives labelled 0."""
    labels = torch.cat([torch.ones(len(in_domain)), torch.zeros(len(negatives))]).long()
    return Split(torch.cat([in_domain, negatives]), labels)


def filter_data(data: DataSet, seed: int, ratio: float = 1.0,
                outliers_dir: str | Path | None = None, per_kind: int = 100) -> PhotoFilterData:
    """Training and validation splits, the acceptance photos and the test negatives."""
    prep = data.preprocessing
    user = (read_outliers_dir(outliers_dir, prep) if outliers_dir is not None
            else torch.empty((0, prep.channels, prep.size, prep.size), dtype=torch.uint8))
    user_train, user_val, user_test = _thirds(user, seed) if len(user) else (user,) * 3
    wanted = max(1, int(len(data.train) * ratio))
    generic = max(wanted - len(user_train), wanted // 4)
    train_neg = torch.cat([user_train, colour_outliers(outliers.TRAIN_KINDS, generic, seed, prep)])
    val_in, accept_in = data.val.images, data.test.images
    if data.test is data.val:
        # No test split: half the validation photos pick the threshold, half measure it.
        order = torch.randperm(len(val_in), generator=torch.Generator().manual_seed(seed))
        half = len(val_in) // 2
        val_in, accept_in = val_in[order[:half]], val_in[order[half:]]
    val_neg = torch.cat([user_val, colour_outliers(outliers.TRAIN_KINDS, len(val_in),
                                                   seed + 1, prep)])
    tests = {kind: colour_outliers([kind], per_kind, seed + 2 + i, prep)
             for i, kind in enumerate(outliers.HELD_OUT_KINDS + outliers.TRAIN_KINDS)}
    held_out = outliers.HELD_OUT_KINDS
    if len(user_test):
        tests[USER_KIND] = user_test
        held_out = (*held_out, USER_KIND)
    return PhotoFilterData(train=_binary(data.train.images, train_neg),
                           val=_binary(val_in, val_neg), accept_in=accept_in,
                           test_outliers=tests, held_out=held_out)


def evaluate(model: torch.nn.Module, fdata: PhotoFilterData, prep: Preprocessing,
             accept_rate: float, device: str = "cpu") -> tuple[dict, torch.Tensor, dict]:
    """Threshold on validation photos, then acceptance and AUROC on unseen images.

    Returns the metrics, the acceptance photos' scores and the negatives' scores by kind.
    """
    val_in = fdata.val.images[fdata.val.labels == 1]
    threshold = threshold_for_acceptance(predict(model, val_in, prep, device=device),
                                         accept_rate)
    in_scores = predict(model, fdata.accept_in, prep, device=device)
    scores = {k: predict(model, v, prep, device=device) for k, v in fdata.test_outliers.items()}
    held = torch.cat([scores[k] for k in fdata.held_out])
    metrics = {
        "threshold": threshold,
        "target_acceptance": accept_rate,
        "in_domain_acceptance": float((in_scores >= threshold).float().mean()),
        "acceptance_images": len(in_scores),
        "held_out_auroc": auroc(in_scores, held),
        "held_out_rejection_rate": float((held < threshold).float().mean()),
        "held_out_negatives": len(held),
        "kinds": {kind: {"held_out": kind in fdata.held_out, "images": len(s),
                         "rejection_rate": float((s < threshold).float().mean()),
                         "auroc": auroc(in_scores, s)} for kind, s in scores.items()},
    }
    return metrics, in_scores, scores
