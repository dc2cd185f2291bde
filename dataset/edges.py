"""Edge labels for the correction network's edge head, built as the original does."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np


def edge_label(label: np.ndarray, ignore: int = 255, thin_classes: Iterable[int] = ()) -> np.ndarray:
    """Binary edge map of a full-resolution label map.

    A pixel is an edge (1) if it differs from its lower, right, lower-right or (for the pixel to the
    right of it) lower-left neighbour, in the positions the original marks, and neither pixel of the
    pair equals ``ignore``; every pixel of a thin class is an edge too. The original compares with 255
    for both data sets, so CamVid's void (11) is an ordinary value here and does produce edges.

    Args:
        label: H×W integer label map (trainIds / CamVid ids), before any flip or crop.
        ignore: value that takes no part in a pair.
        thin_classes: classes whose pixels are all edges (Cityscapes (5, 11, 12), CamVid (2, 9, 10)).

    Returns:
        H×W int64 array with values in {0, 1}.
    """
    valid = label != ignore
    edge = np.zeros(label.shape, dtype=bool)
    # vertical pair (i-1, j)-(i, j) marks (i, j)
    edge[1:, :] |= (label[1:, :] != label[:-1, :]) & valid[1:, :] & valid[:-1, :]
    # horizontal pair (i, j)-(i, j+1) marks (i, j)
    edge[:, :-1] |= (label[:, :-1] != label[:, 1:]) & valid[:, :-1] & valid[:, 1:]
    # diagonal pair (i, j)-(i+1, j+1) marks (i, j)
    edge[:-1, :-1] |= (label[:-1, :-1] != label[1:, 1:]) & valid[:-1, :-1] & valid[1:, 1:]
    # anti-diagonal pair (i, j+1)-(i+1, j) marks (i, j+1)
    edge[:-1, 1:] |= (label[:-1, 1:] != label[1:, :-1]) & valid[:-1, 1:] & valid[1:, :-1]
    edge |= np.isin(label, list(thin_classes))
    return edge.astype(np.int64)
