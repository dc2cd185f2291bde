"""Label spaces: Cityscapes (19 train classes) and CamVid (11 classes), conversion and colours."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch

from .errors import LabelValueError

RGB = tuple[int, int, int]


@dataclass(frozen=True)
class ClassSet:
    """Names, colours and special values of one label space.

    Args:
        name: short name of the data set (``"cityscapes"``, ``"camvid"``).
        names: class names, index = class id.
        colors: RGB colour of each class, for overlays.
        ignore_index: label value that is not a class (255 Cityscapes, 11 CamVid void).
        thin_classes: classes marked as edge everywhere in the edge label.
    """

    name: str
    names: tuple[str, ...]
    colors: tuple[RGB, ...]
    ignore_index: int
    thin_classes: tuple[int, ...]

    @property
    def num_classes(self) -> int:
        return len(self.names)


class HasClasses:
    """For data sets with a ``classes`` :class:`ClassSet`: its ``num_classes`` and ``ignore_index``."""

    classes: ClassSet

    @property
    def num_classes(self) -> int:
        return self.classes.num_classes

    @property
    def ignore_index(self) -> int:
        return self.classes.ignore_index


class CityscapesLabel(NamedTuple):
    """One row of the official Cityscapes label table (``train_id`` 255 = ignored)."""

    name: str
    id: int
    train_id: int


CITYSCAPES_LABELS: tuple[CityscapesLabel, ...] = (
    CityscapesLabel("unlabeled", 0, 255),
    CityscapesLabel("ego vehicle", 1, 255),
    CityscapesLabel("rectification border", 2, 255),
    CityscapesLabel("out of roi", 3, 255),
    CityscapesLabel("static", 4, 255),
    CityscapesLabel("dynamic", 5, 255),
    CityscapesLabel("ground", 6, 255),
    CityscapesLabel("road", 7, 0),
    CityscapesLabel("sidewalk", 8, 1),
    CityscapesLabel("parking", 9, 255),
    CityscapesLabel("rail track", 10, 255),
    CityscapesLabel("building", 11, 2),
    CityscapesLabel("wall", 12, 3),
    CityscapesLabel("fence", 13, 4),
    CityscapesLabel("guard rail", 14, 255),
    CityscapesLabel("bridge", 15, 255),
    CityscapesLabel("tunnel", 16, 255),
    CityscapesLabel("pole", 17, 5),
    CityscapesLabel("polegroup", 18, 255),
    CityscapesLabel("traffic light", 19, 6),
    CityscapesLabel("traffic sign", 20, 7),
    CityscapesLabel("vegetation", 21, 8),
    CityscapesLabel("terrain", 22, 9),
    CityscapesLabel("sky", 23, 10),
    CityscapesLabel("person", 24, 11),
    CityscapesLabel("rider", 25, 12),
    CityscapesLabel("car", 26, 13),
    CityscapesLabel("truck", 27, 14),
    CityscapesLabel("bus", 28, 15),
    CityscapesLabel("caravan", 29, 255),
    CityscapesLabel("trailer", 30, 255),
    CityscapesLabel("train", 31, 16),
    CityscapesLabel("motorcycle", 32, 17),
    CityscapesLabel("bicycle", 33, 18),
    # Never drawn into label images (the polygon is skipped), so it has no lookup entry.
    CityscapesLabel("license plate", -1, 255),
)

CITYSCAPES = ClassSet(
    name="cityscapes",
    names=tuple(label.name for label in CITYSCAPES_LABELS if label.train_id != 255),
    colors=(
        (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153),
        (153, 153, 153), (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152),
        (70, 130, 180), (220, 20, 60), (255, 0, 0), (0, 0, 142), (0, 0, 70),
        (0, 60, 100), (0, 80, 100), (0, 0, 230), (119, 11, 32),
    ),
    ignore_index=255,
    thin_classes=(5, 11, 12),  # pole, person, rider
)

CAMVID = ClassSet(
    name="camvid",
    names=(
        "sky", "building", "pole", "road", "pavement", "tree",
        "sign symbol", "fence", "car", "pedestrian", "bicyclist",
    ),
    colors=(
        (128, 128, 128), (128, 0, 0), (192, 192, 128), (128, 64, 128), (0, 0, 192), (128, 128, 0),
        (192, 128, 128), (64, 64, 128), (64, 0, 128), (64, 64, 0), (0, 128, 192),
    ),
    ignore_index=11,  # void
    thin_classes=(2, 9, 10),  # pole, pedestrian, bicyclist
)


def label_values(label: np.ndarray) -> np.ndarray:
    """Sorted distinct values of an integer label map (a bincount for 8/16-bit maps: no sort)."""
    if label.dtype in (np.uint8, np.uint16):
        return np.flatnonzero(np.bincount(label.ravel()))
    return np.unique(label)


def label_id_lut(labels: tuple[CityscapesLabel, ...] = CITYSCAPES_LABELS) -> np.ndarray:
    """256-entry uint8 lookup table labelId → trainId; ids not in ``labels`` map to 255."""
    lut = np.full(256, 255, dtype=np.uint8)
    for label in labels:
        if label.id >= 0:
            lut[label.id] = label.train_id
    return lut


_LABEL_ID_LUT = label_id_lut()


def label_ids_to_train_ids(label_ids: np.ndarray, lut: np.ndarray | None = None,
                           source: str = "label map") -> np.ndarray:
    """Convert a Cityscapes labelIds map (H×W, values 0..33) to trainIds (H×W uint8, 255 = ignore).

    Args:
        label_ids: integer array of labelIds.
        lut: lookup table from :func:`label_id_lut` (default: this module's table).
        source: what to call the input in an error message (e.g. its file name).

    Raises:
        LabelValueError: if a value is not a Cityscapes labelId.
    """
    bad = np.setdiff1d(label_values(label_ids), [label.id for label in CITYSCAPES_LABELS if label.id >= 0])
    if bad.size:
        raise LabelValueError(f"{source}: values {bad.tolist()} are not Cityscapes labelIds (0..33)")
    return (_LABEL_ID_LUT if lut is None else lut)[label_ids.astype(np.intp)]


def colorize(pred: np.ndarray | torch.Tensor, classes: ClassSet) -> np.ndarray:
    """Colour a class map (H×W integer array or tensor) as an H×W×3 uint8 RGB image.

    The ignore value and any value outside ``0..num_classes-1`` are drawn black.
    """
    if isinstance(pred, torch.Tensor):
        pred = pred.detach().cpu().numpy()
    palette = np.zeros((classes.num_classes + 1, 3), dtype=np.uint8)
    palette[: classes.num_classes] = classes.colors
    index = np.where((pred >= 0) & (pred < classes.num_classes), pred, classes.num_classes)
    return palette[index.astype(np.intp)]
