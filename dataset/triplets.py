"""DAVSS training samples: [img_1, img_2, img_3] = frames t − j, t − k, t and the label of t.

The original expands every labelled frame t into one sample per j = 2 … J (J = 10)
with k drawn once, uniformly in 1 … j − 1, when the list is read (fixed for the whole training).
Here the frames come from a pair data set built with neighbour offsets −1 … −J and no transform
(:class:`dataset.video.VideoPairDataset` or :class:`dataset.synthetic.SyntheticVideoDataset`);
labelled frames that lack any of those neighbours are left out. ``transform`` (the pair sets'
``transform(sample, rng)``) then crops/flips the three frames and the label together.
"""
from __future__ import annotations

import random
from collections import defaultdict
from typing import Callable, Hashable

import numpy as np
import torch
from torch.utils.data import Dataset

from .errors import DatasetError
from .labels import HasClasses

Sample = dict


def _pair_key(pairs: Dataset, index: int) -> tuple[Hashable, int]:
    """(labelled-frame key, offset) of pair ``index`` without loading it."""
    item = pairs.items[index]
    if hasattr(item, "offset"):  # VideoPairDataset: PairItem
        return item.id, int(item.offset)
    clip, t, offset = item       # SyntheticVideoDataset: (clip, t, offset)
    return (clip, t), int(offset)


class TripletDataset(HasClasses, Dataset):
    """``frames`` float32 (3, 3, H, W) = [img_1, img_2, img_3], ``label`` int64 (H, W) of img_3,
    ``offsets`` = (−j, −k), ``id``.

    Args:
        pairs: pair data set with offsets −1 … −``max_distance`` and no transform.
        max_distance: J, the largest keyframe distance (10 in the original).
        transform: ``(sample, rng) -> sample``; rng seeded from ``(seed, epoch, index)``.
        seed: seeds the draw of k (Python ``random``, once) and the per-sample transforms.
    """

    def __init__(self, pairs: Dataset, max_distance: int = 10,
                 transform: Callable[[Sample, np.random.Generator], Sample] | None = None, seed: int = 0):
        if max_distance < 2:
            raise ValueError(f"max_distance must be >= 2 (j = 2 … J), got {max_distance}")
        self.pairs, self.transform, self.seed, self.epoch = pairs, transform, int(seed), 0
        self.classes = pairs.classes
        by_frame: dict[Hashable, dict[int, int]] = defaultdict(dict)
        for i in range(len(pairs)):
            key, offset = _pair_key(pairs, i)
            by_frame[key][offset] = i
        draw = random.Random(seed)
        self.items: list[tuple[int, int, int, int]] = []   # (pair index of j, pair index of k, j, k)
        for offsets in by_frame.values():
            if not all(-d in offsets for d in range(1, max_distance + 1)):
                continue
            for j in range(2, max_distance + 1):
                k = draw.randint(1, j - 1)
                self.items.append((offsets[-j], offsets[-k], j, k))
        if not self.items:
            raise DatasetError(f"no labelled frame has all neighbours at offsets -1..-{max_distance}; "
                             "use longer sequences or a smaller max_distance")

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose augmentation the next iterator draws."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> Sample:
        index_j, index_k, j, k = self.items[index]
        far, near = self.pairs[index_j], self.pairs[index_k]
        sample = {"frames": torch.stack([far["frames"][0], near["frames"][0], far["frames"][1]]),
                  "label": far["label"], "offsets": (-j, -k), "id": far["id"]}
        if self.transform is not None:
            sample = self.transform(sample, np.random.default_rng((self.seed, self.epoch, index)))
        return sample
