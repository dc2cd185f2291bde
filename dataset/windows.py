"""Training windows: runs of T consecutive frames with a training transform (recurrent training).

:class:`AugmentedWindows` applies a training transform to every frame of an evaluation-style window
set (:class:`dataset.video.VideoWindowDataset`); :class:`SyntheticClipWindows` cuts every window of
T consecutive frames out of the synthetic training clips. Both are reached through
:func:`dataset.build_dataset` with ``mode="windows"``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from .synthetic import clip_seed, render_clip
from .video import CountsSamples, SampleCounts, Transform, frames_to_tensor


class AugmentedWindows(Dataset):
    """Windows of ``windows`` (``frames`` T×3×H×W, ``label``, optional ``labels``/``flows``) with
    ``transform`` applied to the whole window, seeded per (seed, epoch, index) like the pair sets.

    ``transform`` None leaves the samples unchanged; :meth:`set_epoch` changes the augmentation.
    :attr:`counts` are those of ``windows``.
    """

    def __init__(self, windows: CountsSamples, transform: Transform | None, seed: int) -> None:
        self.windows, self.transform, self.seed, self.epoch = windows, transform, int(seed), 0

    @property
    def counts(self) -> SampleCounts:
        """The wrapped windows' :class:`dataset.video.SampleCounts`."""
        return self.windows.counts

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, index: int) -> dict:
        sample = self.windows[index]
        if self.transform is not None:
            sample = self.transform(sample, np.random.default_rng((self.seed, self.epoch, index)))
        return sample


class SyntheticClipWindows(Dataset):
    """Every window of ``length`` consecutive frames of the synthetic clips of a split, all labelled.

    The clips are those of :class:`dataset.synthetic.SyntheticVideoDataset` with the same split,
    seed, length and size, rendered once without flows, so a recurrent net sees exactly the scenes
    and frames a per-frame net trained on the pair set saw. Items are (clip, first frame), clip
    by clip. Sample: ``frames`` T×3×H×W float32 RGB in [0, 1], ``labels`` T×H×W int64, ``label``
    (the last frame's), ``id``.
    """

    def __init__(self, split: str = "train", num_clips: int = 16, clip_len: int = 20, height: int = 128,
                 width: int = 256, num_classes: int = 19, length: int = 4, seed: int = 0) -> None:
        if length < 1 or clip_len < length:
            raise ValueError(f"clip_len {clip_len} must be ≥ window {length} ≥ 1")
        self.split, self.seed = split, int(seed)
        self.args = (clip_len, height, width, num_classes)
        self.items = [(c, s) for c in range(num_clips) for s in range(clip_len - length + 1)]
        self.length = length
        self.counts = SampleCounts(len(self.items), len(self.items))
        self._cache: dict[int, dict] = {}

    def __len__(self) -> int:
        return len(self.items)

    def _clip(self, clip: int) -> dict:
        if clip not in self._cache:
            data = render_clip(clip_seed(self.split, clip, self.seed), *self.args, occlusion=False, flows=False)
            self._cache[clip] = {"frames": frames_to_tensor(data["frames"]),
                                 "labels": torch.from_numpy(data["labels"].astype(np.int64))}
        return self._cache[clip]

    def __getitem__(self, index: int) -> dict:
        clip, start = self.items[index]
        data = self._clip(clip)
        window = slice(start, start + self.length)
        labels = data["labels"][window]
        return {"frames": data["frames"][window], "labels": labels, "label": labels[-1],
                "id": f"synthetic_{self.split}_{clip:04d}_{start + self.length - 1:03d}"}
