"""Nearest-neighbour warping of class maps by optical flow, and the shape checks it relies on.

Class maps cannot be warped bilinearly (classes are not numbers that can be averaged), so a class
map is warped by rounding every flow target to the nearest pixel. The flow-warping loss
(:func:`model.temporal_losses.flow_warping_loss`) and the temporal-consistency measures of the
evaluation use this one implementation.

Conventions
-----------
* Class maps are integer tensors ``N×H×W`` or ``H×W`` (any integer dtype, converted to int64).
* Flows are float tensors ``N×2×H×W`` or ``2×H×W`` in pixels, channel 0 = dx, channel 1 = dy, in
  the project's backward convention: ``flow_a→b(x, y)`` says where pixel ``(x, y)`` of frame
  ``a`` is found in frame ``b``, so warping a map of frame ``b`` with ``flow_a→b`` brings it onto
  frame ``a`` (the same convention as :func:`model.warp.warp`).
* The nearest pixel of a target ``v`` is ``floor(v + 0.5)`` (round half up).
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import Tensor

__all__ = [
    "as_class_map",
    "as_class_batch",
    "as_flow_batch",
    "check_flow_matches",
    "rounded_flow_targets",
    "flow_target_in_frame",
    "warp_labels",
]


def as_class_map(x: Tensor, what: str) -> Tensor:
    """``x`` as an int64 class map; ``TypeError`` naming ``what`` for non-tensors and float maps."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{what} must be a torch.Tensor, got {type(x).__name__}")
    if x.is_floating_point() or x.is_complex():
        raise TypeError(
            f"{what} must be an integer class map, got dtype {x.dtype} "
            "(pass argmax(logits), not the logits)"
        )
    return x.long()


def as_class_batch(x: Tensor, what: str) -> Tensor:
    """H×W → 1×H×W; N×H×W unchanged; any other shape is a ``ValueError`` naming ``what``."""
    if x.dim() == 2:
        return x.unsqueeze(0)
    if x.dim() == 3:
        return x
    raise ValueError(f"{what} must have shape N×H×W or H×W, got {tuple(x.shape)}")


def as_flow_batch(flow: Tensor, what: str) -> Tensor:
    """2×H×W → 1×2×H×W; N×2×H×W unchanged; non-float tensors and other shapes are errors."""
    if not isinstance(flow, Tensor) or not flow.is_floating_point():
        raise TypeError(f"{what} must be a floating-point tensor N×2×H×W")
    if flow.dim() == 3:
        flow = flow.unsqueeze(0)
    if flow.dim() != 4 or flow.shape[1] != 2:
        raise ValueError(f"{what} must have shape N×2×H×W or 2×H×W, got {tuple(flow.shape)}")
    return flow


def check_flow_matches(flow: Tensor, ref: Tensor, flow_name: str, ref_name: str) -> None:
    """``ValueError`` unless the N×2×H×W ``flow`` has the N, H and W of the N×H×W map ``ref``."""
    if flow.shape[0] != ref.shape[0] or flow.shape[-2:] != ref.shape[-2:]:
        raise ValueError(
            f"{flow_name} shape {tuple(flow.shape)} does not match {ref_name} shape "
            f"{tuple(ref.shape)} (expected N×2×H×W with the same N, H, W)"
        )


def rounded_flow_targets(flow: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
    """Nearest-pixel target of every pixel of an N×2×H×W flow: ``(ix, iy, inside)``, each N×H×W.

    The target of pixel (x, y) is ``(floor(x + dx + 0.5), floor(y + dy + 0.5))``; ``ix``/``iy``
    (int64) are clamped into the frame, ``inside`` (bool) says whether it was there already, i.e.
    ``-0.5 <= x + dx < W - 0.5`` and likewise for y. Non-finite flow counts as out of the frame.
    """
    n, _, h, w = flow.shape
    xs = torch.arange(w, device=flow.device, dtype=flow.dtype).view(1, 1, w)
    ys = torch.arange(h, device=flow.device, dtype=flow.dtype).view(1, h, 1)
    fx = torch.floor(xs + flow[:, 0] + 0.5)
    fy = torch.floor(ys + flow[:, 1] + 0.5)
    inside = torch.isfinite(fx) & torch.isfinite(fy) & (fx >= 0) & (fx <= w - 1) & (fy >= 0) & (fy <= h - 1)
    ix = torch.nan_to_num(fx, nan=0.0).clamp(0, w - 1).long()
    iy = torch.nan_to_num(fy, nan=0.0).clamp(0, h - 1).long()
    return ix, iy, inside


def flow_target_in_frame(flow: Tensor) -> Tensor:
    """Bool N×H×W: True where the rounded target ``(x + dx, y + dy)`` lies inside the frame."""
    return rounded_flow_targets(as_flow_batch(flow, "flow"))[2]


def warp_labels(labels: Tensor, flow: Tensor, fill_value: Optional[int] = None) -> Tensor:
    """Warp a class map with nearest-neighbour sampling.

    ``out(x, y) = labels(round(x + dx), round(y + dy))`` with ``round(v) = floor(v + 0.5)``.
    Targets outside the frame are clamped to the border (like the feature warp) when
    ``fill_value`` is None, otherwise those pixels are set to ``fill_value`` (e.g. the ignore
    index, which is what the temporal measures and the flow-warping loss use).

    Args:
        labels: int tensor N×H×W or H×W (the map of frame b).
        flow: float tensor N×2×H×W or 2×H×W, flow_a→b (same N, H, W).
    Returns:
        int64 tensor with the shape of ``labels`` (the map brought onto frame a).
    """
    squeeze = labels.dim() == 2
    lab = as_class_batch(as_class_map(labels, "labels"), "labels")
    flow = as_flow_batch(flow, "flow")
    check_flow_matches(flow, lab, "flow", "labels")
    flow = flow.to(lab.device)
    n, h, w = lab.shape
    ix, iy, inside = rounded_flow_targets(flow)
    out = lab.reshape(n, h * w).gather(1, (iy * w + ix).reshape(n, h * w)).reshape(n, h, w)
    if fill_value is not None:
        out = torch.where(inside, out, torch.full_like(out, int(fill_value)))
    return out[0] if squeeze else out
