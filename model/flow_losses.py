"""Losses and resolution conversions for training FlowNet without ground truth (stage 1b).

Flows follow the project's convention: (dx, dy), backward ("where each current pixel is found in
the previous frame"); ``*_q`` flows live on the 1/4 grid in 1/4-grid pixels.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .blocks import upsample4
from .fusion import crop


def charbonnier(x: Tensor, eps: float = 0.01, q: float = 0.4) -> Tensor:
    """Robust penalty ``(|x| + eps)^q`` (generalised Charbonnier), elementwise."""
    return (x.abs() + eps).pow(q)


def _box3(x: Tensor) -> Tensor:
    """3×3 mean with replicated borders."""
    return F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3, 1)


def ssim_lite(a: Tensor, b: Tensor) -> Tensor:
    """Per-pixel (1 − SSIM)/2 over 3×3 windows (as used in self-supervised flow/depth), B×1×H×W."""
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    mu_a, mu_b = _box3(a), _box3(b)
    var_a = _box3(a * a) - mu_a ** 2
    var_b = _box3(b * b) - mu_b ** 2
    cov = _box3(a * b) - mu_a * mu_b
    ssim = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
    return ((1 - ssim) / 2).clamp(0, 1).mean(1, keepdim=True)


def flow_to_full(flow_q: Tensor, size) -> Tensor:
    """1/4-grid flow (1/4-grid pixels) → full-resolution flow in pixels (×4 upsampled, ×4 valued)."""
    return crop(upsample4(flow_q), tuple(size)) * 4.0


def flow_to_quarter(flow: Tensor, size_q) -> Tensor:
    """Full-resolution flow → the 1/4 grid (area average), values scaled by the size ratio."""
    h, w = flow.shape[-2:]
    small = F.adaptive_avg_pool2d(flow, tuple(size_q))
    scale = torch.tensor([size_q[1] / w, size_q[0] / h], dtype=flow.dtype, device=flow.device).view(1, 2, 1, 1)
    return small * scale


def _gradients(x: Tensor) -> tuple[Tensor, Tensor]:
    return x[..., :, 1:] - x[..., :, :-1], x[..., 1:, :] - x[..., :-1, :]


def smoothness(flow_q: Tensor, image_q: Tensor, edge_weight: float) -> Tensor:
    """First-order edge-aware smoothness of a flow on its own grid (image_q: the frame on that grid)."""
    fx, fy = _gradients(flow_q)
    ix, iy = _gradients(image_q)
    wx = torch.exp(-edge_weight * ix.abs().mean(1, keepdim=True))
    wy = torch.exp(-edge_weight * iy.abs().mean(1, keepdim=True))
    return (wx * fx.abs()).mean() + (wy * fy.abs()).mean()
