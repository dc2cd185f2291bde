"""Forward-backward consistency of a pair of optical flows: where a flow can be trusted.

Criterion of Sundaram, Brox, Keutzer, "Dense point trajectories by GPU-accelerated large
displacement optical flow", ECCV 2010: following the forward flow and then the backward flow
should lead back to the start. Pixels where it does not (occlusions, flow errors) are excluded
from the temporal IoU of :class:`engine.metrics.TemporalConsistency` and from the flow
evaluation's masks.
"""
from __future__ import annotations

from typing import Callable, Optional

from torch import Tensor

from model.label_warp import as_flow_batch, rounded_flow_targets
from model.warp import warp

#: ``warp_fn(features, flow)``: B×C×H×W features sampled at ``x + flow(x)`` (pixels, bilinear).
WarpFn = Callable[[Tensor, Tensor], Tensor]


def fb_consistency_mask(
    flow_fwd: Tensor,
    flow_bwd: Tensor,
    warp_fn: Optional[WarpFn] = None,
    alpha: float = 0.01,
    beta: float = 0.5,
) -> Tensor:
    """Forward-backward consistency mask, bool N×H×W on frame ``t``.

    ``flow_fwd`` = ``w_f`` = flow_t→t+1 (pixel x of frame t is found at ``x + w_f(x)`` in frame
    t+1) and ``flow_bwd`` = ``w_b`` = flow_t+1→t, both N×2×H×W (or 2×H×W) in pixels, in the
    project's backward convention. With ``ŵ_b(x) = w_b(x + w_f(x))`` sampled bilinearly
    (``warp_fn(flow_bwd, flow_fwd)``, by default the project's :func:`model.warp.warp`),
    pixel x is valid iff

        |w_f(x) + ŵ_b(x)|² < alpha·(|w_f(x)|² + |ŵ_b(x)|²) + beta      (alpha=0.01, beta=0.5)

    and its rounded target ``round(x + w_f(x))`` lies inside frame t+1. (Sundaram et al.'s
    second criterion, the motion-boundary test on the flow gradient, is not applied.)
    """
    flow_fwd = as_flow_batch(flow_fwd, "flow_fwd")
    flow_bwd = as_flow_batch(flow_bwd, "flow_bwd")
    if flow_fwd.shape != flow_bwd.shape:
        raise ValueError(
            f"flow_fwd shape {tuple(flow_fwd.shape)} does not match flow_bwd shape "
            f"{tuple(flow_bwd.shape)}"
        )
    warp_fn = warp_fn if warp_fn is not None else warp
    flow_bwd = flow_bwd.to(flow_fwd.device, flow_fwd.dtype)
    wb = warp_fn(flow_bwd, flow_fwd)
    lhs = (flow_fwd + wb).pow(2).sum(1)
    rhs = alpha * (flow_fwd.pow(2).sum(1) + wb.pow(2).sum(1)) + beta
    return (lhs < rhs) & rounded_flow_targets(flow_fwd)[2]
