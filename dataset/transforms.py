"""Training transforms on sample dicts, applied identically to every spatial entry.

Each transform is a callable ``(sample, rng) -> sample`` that draws its randomness only from the
numpy Generator it is given (the data sets seed one per sample) and returns a new dict.
Spatial entries, each optional except ``frames``:

* ``frames`` …×3×H×W float (bilinear resize, zero padding);
* label maps ``label``, ``labels`` …×H×W int64 (nearest resize, padded with ``label_fill``) and
  ``edge`` H×W int64 (nearest resize, padded with ``edge_fill``);
* flows ``flow``, ``flows`` …×2×H×W float in pixels, channel 0 = x (flipped with x negated,
  resized with the vectors scaled, zero padding) — as the synthetic data set provides them.

Other keys pass through unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .video import Sample, Transform

MAP_KEYS = ("label", "labels", "edge")
FLOW_KEYS = ("flow", "flows")
TensorFn = Callable[[torch.Tensor], torch.Tensor]


def _apply(sample: Sample, image_fn: TensorFn, map_fn: Callable[[torch.Tensor, str], torch.Tensor],
           flow_fn: TensorFn) -> Sample:
    """New sample with the functions applied to the frames, the label maps and the flows."""
    out = dict(sample)
    out["frames"] = image_fn(sample["frames"])
    for key in MAP_KEYS:
        if key in sample:
            out[key] = map_fn(sample[key], key)
    for key in FLOW_KEYS:
        if key in sample:
            out[key] = flow_fn(sample[key])
    return out


def _resize(x: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    """Resize the last two dims of a …×H×W tensor (any dtype) to ``size``."""
    flat = x.reshape(-1, 1, *x.shape[-2:]).float()
    kwargs = {"align_corners": False} if mode == "bilinear" else {}
    return F.interpolate(flat, size=size, mode=mode, **kwargs).reshape(*x.shape[:-2], *size).to(x.dtype)


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

        def flow_fn(flow: torch.Tensor) -> torch.Tensor:
            flipped = flow.flip(-1)
            flipped[..., 0, :, :] *= -1
            return flipped

        return _apply(sample, lambda x: x.flip(-1), lambda x, _: x.flip(-1), flow_fn)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(p={self.p})"


class RandomScale:
    """Resize by a factor drawn uniformly from ``scale_range``."""

    def __init__(self, scale_range: tuple[float, float]) -> None:
        self.scale_range = scale_range

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        scale = rng.uniform(*self.scale_range)
        height, width = sample["frames"].shape[-2:]
        size = (max(1, round(height * scale)), max(1, round(width * scale)))

        def flow_fn(flow: torch.Tensor) -> torch.Tensor:
            factor = flow.new_tensor([size[1] / width, size[0] / height]).view(2, 1, 1)
            return _resize(flow, size, "bilinear") * factor

        return _apply(sample, lambda x: _resize(x, size, "bilinear"), lambda x, _: _resize(x, size, "nearest"),
                      flow_fn)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(scale_range={self.scale_range})"


class RandomCrop:
    """Crop a random ``size`` = (height, width) window; a smaller sample is first padded at the
    bottom and right (frames and flows with 0, label maps with ``label_fill``, ``edge`` with
    ``edge_fill``; 255 is the edge loss's ignore index)."""

    def __init__(self, size: tuple[int, int], label_fill: int = 255, edge_fill: int = 255) -> None:
        self.size = size
        self.fill = {"label": label_fill, "labels": label_fill, "edge": edge_fill}

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        crop_h, crop_w = self.size
        height, width = sample["frames"].shape[-2:]
        pad = (0, max(crop_w - width, 0), 0, max(crop_h - height, 0))
        top = int(rng.integers(0, max(height, crop_h) - crop_h + 1))
        left = int(rng.integers(0, max(width, crop_w) - crop_w + 1))

        def crop(x: torch.Tensor, fill: float = 0) -> torch.Tensor:
            return F.pad(x, pad, value=fill)[..., top:top + crop_h, left:left + crop_w]

        return _apply(sample, crop, lambda x, key: crop(x, self.fill[key]), crop)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(size={self.size}, fill={self.fill})"


def train_transform(crop_size: tuple[int, int] | None, ignore_index: int,
                    scale_range: tuple[float, float] | None = None, flip_p: float = 0.5) -> Compose:
    """Flip (p = ``flip_p``), then an optional random scale, then an optional random crop padded
    with ``ignore_index`` — the original's order (flip then crop; it has no scaling)."""
    transforms: list[Transform] = [RandomHorizontalFlip(flip_p)]
    if scale_range is not None:
        transforms.append(RandomScale(scale_range))
    if crop_size is not None:
        transforms.append(RandomCrop(crop_size, label_fill=ignore_index))
    return Compose(transforms)
