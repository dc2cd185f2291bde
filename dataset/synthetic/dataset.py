"""The synthetic clips as a torch Dataset of training pairs or evaluation windows."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ..edges import edge_label
from ..labels import HasClasses
from ..video import Sample, SampleCounts, Transform, frames_to_tensor
from .classes import class_set
from .flow import pair_flow
from .render import check_size, render_clip
from .scene import build_scene
from .splits import SPLIT_CODES, clip_seed


class SyntheticVideoDataset(HasClasses, Dataset):
    """Synthetic clips as training pairs or evaluation windows (every frame is labelled).

    Clip ``i`` of a split is ``render_clip(clip_seed(split, i, seed), clip_len, height, width,
    num_classes)``; the splits' clip seeds are disjoint. Clips are rendered on first use and kept
    in a per-process cache (each DataLoader worker has its own): about ``clip_len·H·W·4`` bytes per
    clip in training mode (2.6 MB for 20 frames at 128×256), plus the flows of the window in
    evaluation mode.

    Training mode: one sample per (clip, labelled frame t, offset j), for every t whose neighbours
    at all ``offsets`` lie in the clip (every ``label_stride``-th such t). Sample:
    ``frames`` float32 (2, 3, H, W) RGB in [0, 1] = [neighbour t+j, labelled t]; ``label`` int64
    (H, W); ``edge`` int64 (H, W) (:func:`dataset.edges.edge_label` of the full label); ``offset``
    and ``gap`` = j; ``id`` str; with ``with_flow=True`` also ``flow`` float32 (2, H, W): the exact
    flow from the labelled frame to the neighbour (for every offset, computed directly from the
    scene, not composed; about 5–10 ms per sample at 128×256), i.e. sampling the neighbour at
    pixel + flow reproduces the labelled frame where it is visible. ``transform`` is called as
    ``transform(sample, rng)`` with a numpy Generator seeded from ``(seed, epoch, index)`` (see
    :meth:`set_epoch`); with ``with_flow=True`` it must crop/flip/scale ``flow`` with the frames
    (negating its x component on a horizontal flip, scaling its values with the image).

    Evaluation mode: one sample per clip, the ``window`` frames ending at the clip's last frame:
    ``frames`` float32 (T, 3, H, W) (labelled frame last); ``label`` int64 (H, W); ``labels`` int64
    (T, H, W) of every window frame; ``flows`` float32 (T−1, 2, H, W): ``flows[i]`` is the exact
    backward flow from window frame i+1 to frame i; ``id``; ``gaps`` = [1] * (T−1).

    :attr:`counts` (:func:`dataset.sample_counts`): every sample is served, none dropped (clips in
    evaluation mode, pairs in training mode).
    """

    def __init__(self, split: str = "train", mode: str = "train", num_clips: int = 16, clip_len: int = 20,
                 height: int = 128, width: int = 256, num_classes: int = 19,
                 offsets: Sequence[int] = (-5, -4, -3, -2, -1, 1, 2, 3, 4, 5), window: int = 10,
                 transform: Transform | None = None, seed: int = 0,
                 label_stride: int = 1, with_flow: bool = False) -> None:
        if split not in SPLIT_CODES:
            raise ValueError(f"split must be one of {sorted(SPLIT_CODES)}, got {split!r}")
        if mode not in ("train", "eval"):
            raise ValueError(f"mode must be 'train' or 'eval', got {mode!r}")
        if num_clips < 1:
            raise ValueError(f"num_clips must be ≥ 1, got {num_clips}")
        check_size(height, width)
        self.classes = class_set(num_classes)
        self.split, self.mode, self.num_clips, self.clip_len = split, mode, int(num_clips), int(clip_len)
        self.height, self.width, self.window = int(height), int(width), int(window)
        self.offsets = tuple(int(o) for o in offsets)
        self.transform, self.seed, self.with_flow = transform, int(seed), with_flow
        self.epoch = 0
        self._cache: dict[int, dict[str, Any]] = {}
        if mode == "train":
            if not self.offsets:
                raise ValueError("offsets must not be empty")
            first = max(0, -min(self.offsets))
            last = self.clip_len - 1 - max(0, max(self.offsets))
            if last < first:
                raise ValueError(f"clip_len {clip_len} is too short for offsets {self.offsets}: a labelled "
                                 f"frame needs {first} frames before it and {max(0, max(self.offsets))} after it")
            frames = range(first, last + 1, max(1, int(label_stride)))
            self.items = [(c, t, o) for c in range(self.num_clips) for t in frames for o in self.offsets]
        else:
            if self.window < 1 or self.clip_len < self.window:
                raise ValueError(f"clip_len {clip_len} must be ≥ window {window} ≥ 1 in eval mode")
            self.items = [(c, self.clip_len - 1, 0) for c in range(self.num_clips)]
        self.counts = SampleCounts(len(self.items), len(self.items))

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose augmentation the next iterator draws."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.items)

    def clip_seed(self, clip: int) -> int:
        """Seed of clip ``clip`` of this data set's split and seed."""
        return clip_seed(self.split, clip, self.seed)

    def _clip(self, clip: int) -> dict[str, Any]:
        """Rendered (and cached) data of clip ``clip``: what this mode's samples are cut from."""
        cached = self._cache.get(clip)
        if cached is None:
            seed = self.clip_seed(clip)
            data = render_clip(seed, self.clip_len, self.height, self.width, self.num_classes,
                               occlusion=False, flows=self.mode == "eval")
            if self.mode == "train":
                cached = {"frames": data["frames"], "labels": data["labels"]}
                if self.with_flow:
                    cached["scene"] = build_scene(seed, self.clip_len)
            else:
                w = slice(self.clip_len - self.window, self.clip_len)
                cached = {"frames": data["frames"][w], "labels": data["labels"][w],
                          "flows": data["flow_bwd"][w][1:]}
            self._cache[clip] = cached
        return cached

    def _id(self, clip: int, t: int) -> str:
        return f"synthetic_{self.split}_{clip:04d}_{t:03d}"

    def __getitem__(self, index: int) -> Sample:
        clip, t, offset = self.items[index]
        data = self._clip(clip)
        if self.mode == "eval":
            return {
                "frames": frames_to_tensor(data["frames"]),
                "label": torch.from_numpy(data["labels"][-1].astype(np.int64)),
                "labels": torch.from_numpy(data["labels"].astype(np.int64)),
                "flows": torch.from_numpy(np.ascontiguousarray(data["flows"])),
                "id": self._id(clip, t),
                "gaps": [1] * (self.window - 1),
            }
        label = data["labels"][t]
        sample = {
            "frames": frames_to_tensor(data["frames"][[t + offset, t]]),
            "label": torch.from_numpy(label.astype(np.int64)),
            "edge": torch.from_numpy(edge_label(label, 255, self.classes.thin_classes)),
            "offset": offset,
            "gap": offset,
            "id": self._id(clip, t),
        }
        if self.with_flow:
            flow, _ = pair_flow(data["scene"], self.height, self.width, t, t + offset, occlusion=False)
            sample["flow"] = torch.from_numpy(flow)
        if self.transform is not None:
            sample = self.transform(sample, np.random.default_rng((self.seed, self.epoch, index)))
            if "flow" in sample and tuple(sample["flow"].shape[-2:]) != tuple(sample["label"].shape[-2:]):
                raise ValueError(f"transform left 'flow' at size {tuple(sample['flow'].shape[-2:])} but the label "
                                 f"at {tuple(sample['label'].shape[-2:])}: it must crop/flip the flow too "
                                 f"(or use with_flow=False)")
        return sample
