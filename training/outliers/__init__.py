"""The filter's outlier data set: images that are not clothing, built from offline sources.

Every kind is a function ``(rng, n) -> uint8 array (n, 28, 28)``. Its images come out in
the form the filter sees: either drawn directly at 28x28 as a light drawing on a dark
background (like an MNIST digit fed straight in) or drawn as an upload (ink on paper, a
photo crop) and passed through `training.preprocess.to_canonical`, the path every upload
takes. Nothing is downloaded: fonts, photos and digits come from installed packages.

The kinds live by family (`glyphs`, `drawings`, `pictures`, `synthetic`, `charts`) on the
shared canvas (`canvas`); `dataset` names them and builds the set; `provenance` lists
where their pictures come from. Usage::

    python -m training.outliers --preview outliers.png
"""

from training.outliers.dataset import (
    HELD_OUT_KINDS,
    KINDS,
    TRAIN_KINDS,
    Kind,
    make_outliers,
    preview,
    sources,
)

__all__ = ["HELD_OUT_KINDS", "KINDS", "TRAIN_KINDS", "Kind", "make_outliers", "preview", "sources"]
