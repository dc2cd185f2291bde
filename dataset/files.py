"""Decoding frames and label maps with OpenCV, with checked sizes and values."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from .errors import FrameSizeError, LabelValueError, MissingFileError
from .labels import ClassSet, label_values

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".tif", ".tiff", ".webp")


def imread(path: str | Path, flags: int) -> np.ndarray:
    """``cv2.imread``; :class:`MissingFileError` naming the file when it is absent or cannot be decoded."""
    try:
        image = cv2.imread(str(path), flags)
    except cv2.error:  # a header cv2 refuses by raising (e.g. a size beyond its limits) rather than None
        image = None
    if image is None:
        reason = "cannot be decoded" if Path(path).is_file() else "does not exist"
        raise MissingFileError(f"{path}: file {reason}")
    return image


def read_image(path: str | Path) -> np.ndarray:
    """Decode an image file as an H×W×3 uint8 RGB array."""
    return cv2.cvtColor(imread(path, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def read_label(path: str | Path, classes: ClassSet) -> np.ndarray:
    """Decode a single-channel label map (H×W, its stored integer dtype) and check its values.

    Raises:
        LabelValueError: if the image has several different channels, is not of an integer type
            (a float TIFF), or holds a value outside ``0..num_classes-1`` (negative ones included)
            other than ``classes.ignore_index``.
    """
    label = imread(path, cv2.IMREAD_UNCHANGED)
    if label.ndim == 3 and (label == label[..., :1]).all():
        label = np.ascontiguousarray(label[..., 0])  # a grey map saved with several equal channels
    if label.ndim != 2:
        raise LabelValueError(f"{path}: a label map must have one channel (or equal channels), "
                              f"got shape {label.shape} with different channels (a colour-coded label?)")
    if not np.issubdtype(label.dtype, np.integer):
        raise LabelValueError(f"{path}: a label map must hold integers, got {label.dtype} values")
    values = label_values(label)
    bad = values[((values < 0) | (values >= classes.num_classes)) & (values != classes.ignore_index)]
    if bad.size:
        raise LabelValueError(
            f"{path}: label values {bad.tolist()} are outside the {classes.name} classes "
            f"0..{classes.num_classes - 1} (ignore {classes.ignore_index})")
    return label


def check_same_size(arrays: Sequence[tuple[str | Path, np.ndarray]]) -> None:
    """Check that (path, array) pairs share one height and width.

    Raises:
        FrameSizeError: naming the first file whose size differs from the first one's.
    """
    first_path, first = arrays[0]
    for path, array in arrays[1:]:
        if array.shape[:2] != first.shape[:2]:
            raise FrameSizeError(
                f"{path} is {array.shape[0]}x{array.shape[1]} but {first_path} is "
                f"{first.shape[0]}x{first.shape[1]}: the frames of a clip and its label must have one size")


def read_frames(paths: Sequence[str | Path]) -> np.ndarray:
    """Decode the frames of a clip as a T×H×W×3 uint8 RGB array (all of one size)."""
    frames = [read_image(path) for path in paths]
    check_same_size(list(zip(paths, frames, strict=True)))
    return np.stack(frames)
