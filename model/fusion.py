"""Distortion maps and the merge of warped and corrected logits (EVSS's rectification).

Shapes: ``*_q`` tensors live on the 1/4 grid (B×·×h×w); the full-resolution grid is 4h×4w, which is
the input size when H and W divide by 4 (otherwise callers crop with ``crop``).
"""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from .blocks import upsample4


class Fusion(NamedTuple):
    """Full-resolution products of one rectification step."""

    dm_fine: Tensor      # B×1×4h×4w distortion map in [0, 1]
    logits: Tensor       # B×C×4h×4w merged logits
    warped_up: Tensor    # B×C×4h×4w warped logits ×4
    update_up: Tensor    # B×C×4h×4w CoNet logits ×4
    edge_up: Tensor      # B×2×4h×4w edge logits ×4


def coarse_distortion(key_pred_q: Tensor, warped_q: Tensor) -> Tensor:
    """B×1×h×w float map: 1 where the keyframe's class differs from the warped logits' argmax."""
    return (key_pred_q != warped_q.argmax(1, keepdim=True)).to(warped_q.dtype)


def crop(x: Tensor, size: tuple[int, int] | None) -> Tensor:
    """Crop the bottom/right of a full-resolution map to ``size`` (no-op when None)."""
    return x if size is None else x[..., :size[0], :size[1]]


def fuse(warped_q: Tensor, update_q: Tensor, edge_q: Tensor, dm_coarse_q: Tensor, wf: float,
         size: tuple[int, int] | None = None) -> Fusion:
    """Fine distortion map and merged logits, in the original's order of operations.

    ``dm_fine = (1 − wf)·softmax(edge↑4)[edge] + wf·dm_coarse↑4`` and
    ``logits = warped↑4·(1 − dm_fine) + update↑4·dm_fine`` (↑4: bilinear, align_corners=False).
    ``size`` crops every full-resolution map (training on sizes not divisible by 4).
    """
    edge_up = crop(upsample4(edge_q), size)
    warped_up = crop(upsample4(warped_q), size)
    update_up = crop(upsample4(update_q), size)
    dm_fine = (1 - wf) * torch.softmax(edge_up, 1)[:, 1:2] + wf * crop(upsample4(dm_coarse_q), size)
    logits = warped_up * (1 - dm_fine) + update_up * dm_fine
    return Fusion(dm_fine, logits, warped_up, update_up, edge_up)
