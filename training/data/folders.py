"""Image-folder data sets: train/<class>/*, val/<class>/* and optionally test/<class>/*."""

import hashlib
import logging
import os
from pathlib import Path

import numpy as np
import torch

from training.data.dataset import DataError, DataSet, Split
from training.preprocess import (
    ImageError,
    Preprocessing,
    decode,
    folder_preprocessing,
    to_canonical,
)

log = logging.getLogger(__name__)


def load_image_folder(folder: str | os.PathLike, image_size: int = 64) -> DataSet:
    """Load `train/<class>/*`, `val/<class>/*` and optional `test/<class>/*` under `folder`."""
    root = find_split_root(Path(folder))
    classes = _classes(root / "train", root)
    prep = folder_preprocessing(image_size)
    records: dict[str, str] = {}
    splits, skipped = {}, 0
    for name in ("train", "val", "test"):
        if name == "test" and not (root / "test").is_dir():
            splits["test"] = splits["val"]
            continue
        found = _classes(root / name, root)
        if found != classes:
            raise DataError(_class_mismatch(root / name, classes, found))
        splits[name], n_skipped = _load_split(root, name, classes, prep, records)
        skipped += n_skipped
    if skipped:
        log.warning("skipped %d unreadable file(s) under %s (debug log lists them)", skipped, root)
    return DataSet(
        name=root.name,
        classes=classes,
        train=splits["train"],
        val=splits["val"],
        test=splits["test"],
        preprocessing=prep,
        checksum=_records_checksum(records),
        source=str(root),
        skipped=skipped,
    )


def find_split_root(folder: Path) -> Path:
    """Return `folder`, or its one sub-folder, that contains `train/`."""
    if not folder.is_dir():
        raise DataError(f"data folder {folder} does not exist")
    if (folder / "train").is_dir():
        return folder
    nested = [p for p in _visible(folder) if p.is_dir() and (p / "train").is_dir()]
    if len(nested) == 1:
        return nested[0]
    found = ", ".join(p.name for p in nested) or "none"
    raise DataError(
        f"{folder} has no train/ folder (sub-folders with one: {found}); an image-folder "
        "data set needs train/<class>/ and val/<class>/, optionally test/<class>/"
    )


def _visible(folder: Path) -> list[Path]:
    """Sorted entries of `folder` whose names do not start with '.'."""
    return sorted(p for p in folder.iterdir() if not p.name.startswith("."))


def _classes(split_dir: Path, root: Path) -> list[str]:
    """Sorted class folder names of one split; DataError when the split is missing or empty."""
    if not split_dir.is_dir():
        raise DataError(
            f"{root} has no {split_dir.name}/ folder; an image-folder data set needs "
            "train/<class>/ and val/<class>/ (test/<class>/ is optional)"
        )
    classes = [p.name for p in _visible(split_dir) if p.is_dir()]
    if not classes:
        raise DataError(f"{split_dir} has no class folders; put images in {split_dir}/<class>/")
    return classes


def _class_mismatch(split_dir: Path, classes: list[str], found: list[str]) -> str:
    """Message naming the classes a split lacks or adds compared with train/."""
    missing = sorted(set(classes) - set(found))
    extra = sorted(set(found) - set(classes))
    return (
        f"{split_dir} has different classes than train/: missing {missing}, extra {extra}; "
        "every split needs the same class folders"
    )


def _files(folder: Path) -> list[Path]:
    """All non-hidden files below `folder`, sorted."""
    return sorted(
        p
        for p in folder.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


def _load_split(
    root: Path, split: str, classes: list[str], prep: Preprocessing, records: dict[str, str]
) -> tuple[Split, int]:
    """Decode one split's images to canonical form; return it and the skipped count."""
    images, labels, skipped = [], [], 0
    for label, name in enumerate(classes):
        class_dir = root / split / name
        files = _files(class_dir)
        if not files:
            raise DataError(f"class {name!r} in {split}/ is empty: {class_dir} has no files")
        count = 0
        for path in files:
            array = _read_image(path, prep, records, root)
            if array is None:
                skipped += 1
                continue
            images.append(array)
            labels.append(label)
            count += 1
        if not count:
            raise DataError(f"class {name!r} in {split}/ has no readable images ({class_dir})")
    split_data = Split(torch.from_numpy(np.stack(images)), torch.tensor(labels, dtype=torch.int64))
    return split_data, skipped


def _read_image(
    path: Path, prep: Preprocessing, records: dict[str, str], root: Path
) -> np.ndarray | None:
    """Decode one file to canonical form and record its hash; None when unreadable."""
    try:
        data = path.read_bytes()
        array = to_canonical(decode(data, prep), prep)
    except (ImageError, OSError) as exc:  # not an image, damaged, or unreadable file
        log.debug("skipping %s: %s", path, exc)
        return None
    records[path.relative_to(root).as_posix()] = hashlib.sha256(data).hexdigest()
    return array


def _records_checksum(records: dict[str, str]) -> str:
    """sha256 over sorted (relative path, file sha256) pairs."""
    digest = hashlib.sha256()
    for rel, file_hash in sorted(records.items()):
        digest.update(f"{rel}\0{file_hash}\n".encode())
    return digest.hexdigest()
