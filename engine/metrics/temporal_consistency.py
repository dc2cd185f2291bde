"""Temporal consistency of predictions on consecutive frames: ETC's TC and the temporal IoU.

* ETC temporal consistency (Liu et al., "Efficient Semantic Video Segmentation with Per-frame
  Inference", ECCV 2020): the mIoU between a frame's prediction and the next frame's prediction
  warped back by optical flow.
* Temporal IoU: the same, counted only where the flows pass the forward-backward check
  (:func:`engine.metrics.fb_consistency_mask`).
"""
from __future__ import annotations

from typing import Callable, Dict, Optional, Union

import torch
import torch.distributed as dist
from torch import Tensor

from model.label_warp import (
    as_class_batch,
    as_class_map,
    as_flow_batch,
    check_flow_matches,
    flow_target_in_frame,
    warp_labels,
)

from .confusion import ConfusionMatrix
from .flow_consistency import WarpFn, fb_consistency_mask
from .reduction import all_reduce_sum, nan_to_none

#: ``estimator(current, previous)`` → flow_current→previous, B×2×H×W in pixels (e.g. an
#: :class:`engine.flow_estimators.FlowEstimator`).
FlowEstimatorFn = Callable[[Tensor, Tensor], Tensor]


class TemporalConsistency:
    """Streaming temporal consistency of predictions on consecutive frames.

    For a pair of consecutive frames (t, t+1) with predictions ``P_t``, ``P_t+1``, the
    **reference frame is t**: ``P_t+1`` is warped back onto frame t with the forward flow
    ``w_f = flow_t→t+1`` (backward convention: pixel x of frame t is found at ``x + w_f(x)`` in
    frame t+1; this is ``estimator(current=frame_t, previous=frame_t+1)``) using
    nearest-neighbour sampling, ``Q_t(x) = P_t+1(round(x + w_f(x)))`` (:func:`model.label_warp.warp_labels`).

    (a) **ETC measure** (Liu et al., ECCV 2020; no occlusion mask): one confusion matrix between
        ``P_t`` (rows) and ``Q_t`` (columns), accumulated over all pairs of all clips; ``tc_etc``
        is its mIoU (mean over classes with a non-empty union).  Pixels whose target
        ``round(x + w_f(x))`` falls outside frame t+1 have no correspondence and are excluded
        (``out_of_frame="ignore"``, default; ``"clamp"`` keeps them with border-clamped
        sampling).  ``in_frame_fraction`` reports the share of pixels counted.
    (b) **Temporal IoU with forward-backward mask** (Sundaram et al., ECCV 2010 criterion): the
        same, but only pixels that pass :func:`fb_consistency_mask` with
        ``w_b = flow_t+1→t`` (``estimator(current=frame_t+1, previous=frame_t)``) are counted;
        ``tc_fb`` is the mIoU of that matrix and ``fb_valid_fraction`` = counted pixels / all
        pixels of the reference frames.  Only pairs given ``flow_bwd`` contribute to (b).

    mIoU is symmetric in rows and columns, so the choice of reference only matters through the
    flow direction and the masks.  Use :meth:`update` for explicit pairs or :meth:`push` to feed
    a clip frame by frame (only the previous prediction and frame are kept), :meth:`new_clip`
    between clips, :meth:`all_reduce` before :meth:`compute` in distributed runs.
    """

    def __init__(
        self,
        num_classes: int,
        flow_estimator: Optional[FlowEstimatorFn] = None,
        flow_source: Optional[str] = None,
        fb_check: bool = True,
        out_of_frame: str = "ignore",
        alpha: float = 0.01,
        beta: float = 0.5,
        warp_fn: Optional[WarpFn] = None,
    ) -> None:
        if out_of_frame not in ("ignore", "clamp"):
            raise ValueError(f"out_of_frame must be 'ignore' or 'clamp', got {out_of_frame!r}")
        self.num_classes = int(num_classes)
        self.flow_estimator = flow_estimator
        if flow_source is None:
            flow_source = getattr(flow_estimator, "name", None) or "given flows"
        self.flow_source = str(flow_source)
        self.fb_check = bool(fb_check)
        self.out_of_frame = out_of_frame
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.warp_fn = warp_fn
        # internal matrices: label role = reference prediction P_t, -1 marks excluded pixels
        self.cm_etc = ConfusionMatrix(self.num_classes, ignore_index=-1)
        self.cm_fb = ConfusionMatrix(self.num_classes, ignore_index=-1)
        # pairs, pixels, in-frame pixels, pairs with w_b, pixels of those pairs, fb-valid pixels
        self._counts = torch.zeros(6, dtype=torch.int64)
        self._prev_pred: Optional[Tensor] = None
        self._prev_frame: Optional[Tensor] = None

    # -- pairs --------------------------------------------------------------------------------
    def update(
        self,
        pred_t: Tensor,
        pred_next: Tensor,
        flow_fwd: Tensor,
        flow_bwd: Optional[Tensor] = None,
    ) -> "TemporalConsistency":
        """Add pairs (t, t+1).

        Args:
            pred_t: int N×H×W (or H×W) predictions on frame t (the reference).
            pred_next: int N×H×W predictions on frame t+1.
            flow_fwd: N×2×H×W flow_t→t+1 (where each pixel of frame t is found in frame t+1).
            flow_bwd: optional N×2×H×W flow_t+1→t, enables the forward-backward measure (b).
        """
        if pred_t.shape != pred_next.shape:
            raise ValueError(
                f"pred_t shape {tuple(pred_t.shape)} does not match pred_next shape "
                f"{tuple(pred_next.shape)}"
            )
        p0 = as_class_batch(as_class_map(pred_t, "pred_t"), "pred_t")
        p1 = as_class_batch(as_class_map(pred_next, "pred_next"), "pred_next").to(p0.device)
        wf = as_flow_batch(flow_fwd, "flow_fwd").to(p0.device)
        check_flow_matches(wf, p0, "flow_fwd", "pred_t")
        n, h, w = p0.shape
        warped = warp_labels(p1, wf)
        inside = flow_target_in_frame(wf)
        keep = inside if self.out_of_frame == "ignore" else torch.ones_like(inside)
        ref = torch.where(keep, p0, torch.full_like(p0, -1))
        self.cm_etc.update(warped, ref)
        counts = [n, n * h * w, int(keep.sum()), 0, 0, 0]
        if flow_bwd is not None:
            wb = as_flow_batch(flow_bwd, "flow_bwd").to(p0.device)
            check_flow_matches(wb, p0, "flow_bwd", "pred_t")
            valid = fb_consistency_mask(wf, wb, self.warp_fn, self.alpha, self.beta)
            self.cm_fb.update(warped, torch.where(valid, p0, torch.full_like(p0, -1)))
            counts[3:] = [n, n * h * w, int(valid.sum())]
        self._counts += torch.tensor(counts, dtype=torch.int64)
        return self

    # -- streaming over a clip ----------------------------------------------------------------
    def push(
        self,
        pred: Tensor,
        frame: Optional[Tensor] = None,
        flow_fwd: Optional[Tensor] = None,
        flow_bwd: Optional[Tensor] = None,
    ) -> "TemporalConsistency":
        """Feed the next frame of the current clip (batch size 1 or B parallel clips).

        ``pred`` is the prediction on the new frame t+1.  Flows relating it to the previously
        pushed frame t are either given (``flow_fwd`` = flow_t→t+1, ``flow_bwd`` = flow_t+1→t)
        or computed by the flow estimator from ``frame`` (B×3×H×W in [0, 1]) and the previous
        frame: ``flow_fwd = est(current=frame_t, previous=frame_t+1)`` and, when ``fb_check``,
        ``flow_bwd = est(current=frame_t+1, previous=frame_t)``.  The first push of a clip only
        stores the prediction (and frame).
        """
        pred = as_class_batch(as_class_map(pred, "pred"), "pred")
        if self._prev_pred is not None:
            if self._prev_pred.shape != pred.shape:
                raise ValueError(
                    f"pred shape {tuple(pred.shape)} differs from the previous frame's "
                    f"{tuple(self._prev_pred.shape)} (call new_clip() between clips)"
                )
            if flow_fwd is None:
                if self.flow_estimator is None or frame is None or self._prev_frame is None:
                    raise ValueError(
                        "push() needs flow_fwd, or a flow_estimator and the frames, to relate "
                        "consecutive predictions"
                    )
                flow_fwd = self.flow_estimator(self._prev_frame, frame)
                if self.fb_check and flow_bwd is None:
                    flow_bwd = self.flow_estimator(frame, self._prev_frame)
            self.update(self._prev_pred, pred, flow_fwd, flow_bwd if self.fb_check else None)
        self._prev_pred = pred
        self._prev_frame = frame
        return self

    def new_clip(self) -> "TemporalConsistency":
        """Forget the stored previous frame (the next push starts a new clip)."""
        self._prev_pred = None
        self._prev_frame = None
        return self

    # -- results ------------------------------------------------------------------------------
    def compute(self) -> Dict[str, object]:
        """JSON-ready results: ``tc_etc``, ``tc_fb`` (None without backward flows), the counted
        fractions and pair counts, and a description of the flow source and masks."""
        c = self._counts.tolist()
        fb_pairs = c[3]
        return {
            "tc_etc": nan_to_none(self.cm_etc.miou()),
            "tc_fb": nan_to_none(self.cm_fb.miou()) if fb_pairs else None,
            "in_frame_fraction": (c[2] / c[1]) if c[1] else None,
            "fb_valid_fraction": (c[5] / c[4]) if fb_pairs else None,
            "num_pairs": c[0],
            "num_fb_pairs": fb_pairs,
            "flow_source": self.flow_source,
            "mask_etc": "none (out-of-frame pixels %s)"
            % ("excluded" if self.out_of_frame == "ignore" else "clamped to the border"),
            "mask_fb": f"forward-backward check |wf+wb|^2 < {self.alpha}(|wf|^2+|wb|^2)+{self.beta}, "
            "out-of-frame excluded",
        }

    def reset(self) -> "TemporalConsistency":
        """Forget every counted pair and the current clip."""
        self.cm_etc.reset()
        self.cm_fb.reset()
        self._counts.zero_()
        return self.new_clip()

    def all_reduce(self, group: Optional[dist.ProcessGroup] = None) -> "TemporalConsistency":
        """Sum both matrices and the counts over all processes (no-op without a process group)."""
        self.cm_etc.all_reduce(group)
        self.cm_fb.all_reduce(group)
        self._counts = all_reduce_sum(self._counts, group)
        return self

    def state_dict(self) -> Dict[str, object]:
        """Both confusion matrices and the counts (not the current clip's previous frame)."""
        return {
            "cm_etc": self.cm_etc.state_dict(),
            "cm_fb": self.cm_fb.state_dict(),
            "counts": self._counts.clone(),
        }

    def load_state_dict(self, state: Dict[str, object]) -> "TemporalConsistency":
        """Replace the accumulated results by those of a :meth:`state_dict`."""
        self.cm_etc.load_state_dict(state["cm_etc"])
        self.cm_fb.load_state_dict(state["cm_fb"])
        self._counts = torch.as_tensor(state["counts"], dtype=torch.int64).clone()
        return self

    def merge(self, other: Union["TemporalConsistency", Dict[str, object]]) -> "TemporalConsistency":
        """Add the results of another measure (or its :meth:`state_dict`), e.g. of another shard."""
        state = other.state_dict() if isinstance(other, TemporalConsistency) else other
        self.cm_etc.merge(state["cm_etc"])
        self.cm_fb.merge(state["cm_fb"])
        self._counts += torch.as_tensor(state["counts"], dtype=torch.int64)
        return self
