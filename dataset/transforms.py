"""Training transforms on sample dicts, applied identically to frames, label and edge.

Each transform is a callable ``(sample, rng) -> sample`` that draws its randomness only from the
numpy Generator it is given (the data sets seed one per sample), and returns a new dict.
Spatial keys: ``frames`` (…×H×W float), ``label`` and ``edge`` (H×W int64); other keys pass through.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .video import Sample, Transform

IMAGE_KEY = "frames"
MAP_KEYS = ("label", "edge")


def _apply(sample: Sample, image_fn, map_fn) -> Sample:
    """New sample with ``image_fn`` applied to the frames and ``map_fn`` to the label/edge maps."""
    out = dict(sample)
    out[IMAGE_KEY] = image_fn(sample[IMAGE_KEY])
    for key in MAP_KEYS:
        if key in sample:
            out[key] = map_fn(sample[key], key)
    return out


class Compose:
    """Apply transforms in order, all with the same generator."""

    def __init__(self, transforms: Sequence[Transform]) -> None:
        self.transforms = list(transforms)

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        for transform in self.transforms:
            sample = transform(sample, rng)
        return sample

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.transforms})"


class RandomHorizontalFlip:
    """Mirror left–right with probability ``p``."""

    def __init__(self, p: float = 0.5) -> None:
        self.p = p

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        if rng.random() >= self.p:
            return sample
        return _apply(sample, lambda x: x.flip(-1), lambda x, _: x.flip(-1))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(p={self.p})"


class RandomScale:
    """Resize by a factor drawn uniformly from ``scale_range``: frames bilinear, maps nearest."""

    def __init__(self, scale_range: tuple[float, float]) -> None:
        self.scale_range = scale_range

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        scale = rng.uniform(*self.scale_range)
        height, width = sample[IMAGE_KEY].shape[-2:]
        size = (max(1, round(height * scale)), max(1, round(width * scale)))

        def image_fn(frames: torch.Tensor) -> torch.Tensor:
            flat = frames.reshape(-1, *frames.shape[-3:])
            return F.interpolate(flat, size=size, mode="bilinear", align_corners=False).reshape(
                *frames.shape[:-2], *size)

        def map_fn(label: torch.Tensor, _: str) -> torch.Tensor:
            return F.interpolate(label[None, None].float(), size=size, mode="nearest")[0, 0].to(label.dtype)

        return _apply(sample, image_fn, map_fn)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(scale_range={self.scale_range})"


class RandomCrop:
    """Crop a random ``size`` = (height, width) window; a smaller sample is first padded at the
    bottom and right (frames with 0, ``label`` with ``label_fill``, ``edge`` with ``edge_fill``;
    255 is the edge loss's ignore index)."""

    def __init__(self, size: tuple[int, int], label_fill: int = 255, edge_fill: int = 255) -> None:
        self.size = size
        self.fill = {"label": label_fill, "edge": edge_fill}

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        crop_h, crop_w = self.size
        height, width = sample[IMAGE_KEY].shape[-2:]
        pad = (0, max(crop_w - width, 0), 0, max(crop_h - height, 0))
        top = int(rng.integers(0, max(height, crop_h) - crop_h + 1))
        left = int(rng.integers(0, max(width, crop_w) - crop_w + 1))

        def image_fn(frames: torch.Tensor) -> torch.Tensor:
            return F.pad(frames, pad)[..., top:top + crop_h, left:left + crop_w]

        def map_fn(label: torch.Tensor, key: str) -> torch.Tensor:
            return F.pad(label, pad, value=self.fill[key])[top:top + crop_h, left:left + crop_w]

        return _apply(sample, image_fn, map_fn)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(size={self.size}, fill={self.fill})"


def train_transform(crop_size: tuple[int, int] | None, ignore_index: int,
                    scale_range: tuple[float, float] | None = None, flip_p: float = 0.5) -> Compose:
    """Flip (p = ``flip_p``), then an optional random scale, then an optional random crop —
    the original's order (flip then crop; it has no scaling)."""
    transforms: list[Transform] = [RandomHorizontalFlip(flip_p)]
    if scale_range is not None:
        transforms.append(RandomScale(scale_range))
    if crop_size is not None:
        transforms.append(RandomCrop(crop_size, label_fill=ignore_index))
    return Compose(transforms)
