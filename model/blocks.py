"""Building blocks shared by CSRNet and CoNet.

Module and parameter names follow the released EVSS checkpoints (``conv``/``norm`` units, the
``bottleneck``/``blend_conv``/``sk`` upsampling block), so released weights load without renaming.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ImageNormalize(nn.Module):
    """``(x - mean) / std`` per RGB channel, for frames given as floats in [0, 1].

    Subtract-then-divide, as the original computes it (not a multiply by 1/std), so logits match
    the released model to float rounding.
    """

    def __init__(self, mean: tuple[float, ...] = IMAGENET_MEAN, std: tuple[float, ...] = IMAGENET_STD):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)

    def forward(self, image: Tensor) -> Tensor:
        if image.dtype in (torch.bfloat16, torch.float16):  # one rounding, and 3× faster than in bf16 on CPU
            return image.float().sub(self.mean).div(self.std).to(image.dtype)
        return image.sub(self.mean.to(image.dtype)).div(self.std.to(image.dtype))


class PooledBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm for globally pooled maps: uses running statistics when a channel has one value.

    In training mode a batch of one 1×1 map has a single value per channel, where batch statistics
    are undefined (plain BatchNorm raises). The released code crashes there; this layer normalises
    with the running statistics instead (and leaves them untouched). Everything else is plain
    ``BatchNorm2d``, and ``SyncBatchNorm.convert_sync_batchnorm`` converts it like one.
    """

    def forward(self, x: Tensor) -> Tensor:
        if self.training and x.numel() == x.shape[1]:
            return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                                training=False, momentum=0.0, eps=self.eps)
        return super().forward(x)


class ConvNormAct(nn.Sequential):
    """``conv`` (k×k, padding k//2, no bias) → ``norm`` → ``relu`` (the activation given)."""

    def __init__(self, cin: int, cout: int, k: int, act: Callable[[], nn.Module],
                 norm: type[nn.BatchNorm2d] = nn.BatchNorm2d, bn_momentum: float = 0.1):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, padding=k // 2, bias=False)
        self.norm = norm(cout, momentum=bn_momentum)
        self.relu = act()


def relu() -> nn.Module:
    return nn.ReLU(inplace=True)


def leaky_relu() -> nn.Module:
    return nn.LeakyReLU(0.1, inplace=True)


def resize(x: Tensor, size: tuple[int, int] | torch.Size) -> Tensor:
    """Bilinear resize with ``align_corners=False`` (the convention of every EVSS resize)."""
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


def quarter_size(size: Sequence[int]) -> tuple[int, int]:
    """The 1/4 grid (ceil(ceil(H/2)/2), ceil(ceil(W/2)/2)) = (ceil(H/4), ceil(W/4)) of an H×W frame."""
    return tuple((int(s) + 3) // 4 for s in size)  # type: ignore[return-value]


def upsample4(x: Tensor) -> Tensor:
    """Bilinear ×4 (``align_corners=False``): the 1/4 grid to the full-resolution grid."""
    return F.interpolate(x, scale_factor=4, mode="bilinear", align_corners=False)


def global_avg_pool(x: Tensor) -> Tensor:
    """Per-channel mean of a B×C×H×W map, B×C×1×1 (``adaptive_avg_pool2d(x, 1)``).

    A ``channels_last`` map is summed over the pixel rows of its NHWC view, then divided: the same
    value up to float rounding, and in bf16 on CPU 10× faster than a mean over H and W, which
    converts the whole map to float32 first.
    """
    if x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
        b, c, h, w = x.shape
        return (x.permute(0, 2, 3, 1).reshape(b, h * w, c).sum(1) / (h * w)).view(b, c, 1, 1)
    return F.adaptive_avg_pool2d(x, 1)


class SKFusion(nn.Module):
    """Selective-kernel fusion of two equally shaped maps with per-channel softmax weights.

    ``s = a + b``; ``z = fc(avgpool(s))``; per channel, ``(w_a, w_b) = softmax(fc1(z), fc2(z))``;
    output ``conv_out(w_a·a + w_b·b)``, computed in this order by default (the original's). With
    ``lean = True`` (set by :func:`model.inference.optimize_for_inference`) ``avgpool(s)`` is computed as
    ``avgpool(a) + avgpool(b)`` (the caller may pass ``avgpool(a)``) and the blend is written into ``a``
    as ``a + w_b·(b − a)`` (one pass; ``w_a = 1 − w_b``): no full-size temporary at all, equal up to
    float rounding.
    """

    def __init__(self, channels: int, act: Callable[[], nn.Module]):
        super().__init__()
        self.lean = False
        self.fc = ConvNormAct(channels, channels, 1, act, norm=PooledBatchNorm2d)
        self.fc1 = nn.Linear(channels, channels)
        self.fc2 = nn.Linear(channels, channels)
        self.conv_out = ConvNormAct(channels, channels, 1, act)

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        return self.conv_out(self.mix(a, b))

    def mix(self, a: Tensor, b: Tensor, pooled_a: Tensor | None = None) -> Tensor:
        """``w_a·a + w_b·b`` (before ``conv_out``); when ``lean``, computed in place in ``a``, which the
        caller must own (a temporary it no longer needs), with ``pooled_a`` = ``avgpool(a)`` if given."""
        if self.lean:
            pooled = (global_avg_pool(a) if pooled_a is None else pooled_a) + global_avg_pool(b)
        else:
            pooled = global_avg_pool(a + b)
        z = self.fc(pooled).flatten(1)
        weights = torch.softmax(torch.stack([self.fc1(z), self.fc2(z)], 1), dim=1)
        w_a = weights[:, 0, :, None, None]
        w_b = weights[:, 1, :, None, None]
        return a.lerp_(b, w_b) if self.lean else a * w_a + b * w_b


class UpsampleSK(nn.Module):
    """Decoder step: project the skip (``bottleneck``), resize ``x`` to it, fuse (``sk``), blend.

    Args:
        cin: channels of ``x`` (and of the projected skip).
        skip_in: channels of the skip feature.
        cout: output channels of the 3×3 ``blend_conv``.

    Each full-size temporary is dropped as soon as it is dead (this is where the keyframe network's
    memory peaks); with a lean ``sk`` (inference) the blend is written into the resized ``x`` and
    ``sk``'s two stages are called one by one, so the projected skip is freed before ``conv_out``; when
    ``x`` is resized by exactly 2 (or not at all), ``sk`` pools ``x`` instead of the resized map: the
    same mean (a ×2 bilinear resize with ``align_corners=False`` weighs every input pixel equally),
    read from a quarter of the memory.
    """

    def __init__(self, cin: int, skip_in: int, cout: int, act: Callable[[], nn.Module]):
        super().__init__()
        self.bottleneck = ConvNormAct(skip_in, cin, 1, act)
        self.blend_conv = ConvNormAct(cin, cout, 3, act)
        self.sk = SKFusion(cin, act)

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        skip = self.bottleneck(skip)
        if self.sk.lean:  # blend into x and drop the skip before conv_out: one full-size map less at the peak
            size = skip.shape[-2:]
            pooled = global_avg_pool(x) if all(n in (m, 2 * m) for n, m in zip(size, x.shape[-2:])) else None
            x = self.sk.mix(resize(x, size), skip, pooled)
            del skip
            x = self.sk.conv_out(x)
        else:
            x = self.sk(resize(x, skip.shape[-2:]), skip)
            del skip
        return self.blend_conv(x)
