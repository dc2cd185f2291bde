"""Class ids the synthetic scene is labelled with (Cityscapes trainIds) and their maps to the
CamVid classes and the Cityscapes labelIds."""

from __future__ import annotations

import numpy as np

from ..labels import CAMVID, CITYSCAPES, ClassSet

ROAD, SIDEWALK, BUILDING, WALL, FENCE, POLE, LIGHT, SIGN, VEGETATION, TERRAIN, SKY, PERSON, RIDER, \
    CAR, TRUCK, BUS, TRAIN, MOTORCYCLE, BICYCLE = range(19)

#: trainId (0..18, 255) → CamVid 11-class id (0..10, 11 = void).
TRAINID_TO_CAMVID = np.full(256, 11, dtype=np.uint8)
TRAINID_TO_CAMVID[:19] = [3, 4, 1, 1, 7, 2, 6, 6, 5, 5, 0, 9, 10, 8, 8, 8, 8, 10, 10]
#: trainId (0..18, 255) → Cityscapes labelId (first labelId of the class; ignore → 0).
TRAINID_TO_LABELID = np.zeros(256, dtype=np.uint8)
TRAINID_TO_LABELID[:19] = [7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33]


def class_set(num_classes: int) -> ClassSet:
    """The class set clips are labelled in: 19 → Cityscapes trainIds, 11 → CamVid ids."""
    if num_classes == 19:
        return CITYSCAPES
    if num_classes == 11:
        return CAMVID
    raise ValueError(f"num_classes must be 19 (Cityscapes) or 11 (CamVid), got {num_classes}")
