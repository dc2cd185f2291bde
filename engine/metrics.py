"""Segmentation metrics: confusion matrices and temporal-consistency measures.

Conventions used throughout this module
---------------------------------------
* Class maps (``pred`` and ``label``) are integer tensors of shape ``N×H×W`` or ``H×W``
  (any integer dtype is accepted and converted to int64).
* Flows are float tensors ``N×2×H×W`` (or ``2×H×W``), channel 0 = dx, channel 1 = dy, in pixels,
  **backward convention**: ``flow_a→b(x, y)`` says where pixel ``(x, y)`` of frame ``a`` is found
  in frame ``b``, i.e. frame ``a`` at ``(x, y)`` shows what frame ``b`` shows at
  ``(x + dx, y + dy)``.  A :class:`engine.flow_estimators.FlowEstimator` called as
  ``estimator(current=frame_a, previous=frame_b)`` returns exactly ``flow_a→b``.
* Confusion matrices are ``C×C`` int64 with rows = label (ground truth, or the reference map)
  and columns = prediction: ``M[i, j]`` counts pixels with label ``i`` predicted as ``j``.

Definitions (the README copies these)
--------------------------------------
* ``IoU_c = M[c, c] / (sum_j M[c, j] + sum_i M[i, c] - M[c, c])``; NaN when the union (the
  denominator) is 0.  ``mIoU`` = mean of ``IoU_c`` over the classes with a non-empty union.
  Pixel accuracy = ``trace(M) / sum(M)``.
* ETC temporal consistency (Liu et al., "Efficient Semantic Video Segmentation with Per-frame
  Inference", ECCV 2020): see :class:`TemporalConsistency`.
* Temporal IoU with a forward-backward consistency mask (criterion of Sundaram, Brox, Keutzer,
  "Dense point trajectories by GPU-accelerated large displacement optical flow", ECCV 2010):
  see :func:`fb_consistency_mask` and :class:`TemporalConsistency`.
* VSPW video consistency ``VC_n`` (Miao et al., "VSPW: A Large-scale Dataset for Video Scene
  Parsing in the Wild", CVPR 2021, and its official script ``VC_perclip.py`` in
  github.com/VSPW-dataset/VSPW_code): see :class:`VideoConsistency`.
"""

from __future__ import annotations

import math
from typing import Callable, Dict, Optional, Sequence, Union

import torch
import torch.distributed as dist
from torch import Tensor

__all__ = [
    "ConfusionMatrix",
    "warp_labels",
    "flow_target_in_frame",
    "fb_consistency_mask",
    "TemporalConsistency",
    "VideoConsistency",
    "video_consistency",
]

WarpFn = Callable[[Tensor, Tensor], Tensor]


# ----------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------
def _as_class_map(x: Tensor, what: str) -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"{what} must be a torch.Tensor, got {type(x).__name__}")
    if x.is_floating_point() or x.is_complex():
        raise TypeError(
            f"{what} must be an integer class map, got dtype {x.dtype} "
            "(pass argmax(logits), not the logits)"
        )
    return x.long()


def _as_batch(x: Tensor, what: str) -> Tensor:
    """H×W → 1×H×W; N×H×W unchanged; anything else is an error."""
    if x.dim() == 2:
        return x.unsqueeze(0)
    if x.dim() == 3:
        return x
    raise ValueError(f"{what} must have shape N×H×W or H×W, got {tuple(x.shape)}")


def _as_flow_batch(flow: Tensor, what: str) -> Tensor:
    if not isinstance(flow, Tensor) or not flow.is_floating_point():
        raise TypeError(f"{what} must be a floating-point tensor N×2×H×W")
    if flow.dim() == 3:
        flow = flow.unsqueeze(0)
    if flow.dim() != 4 or flow.shape[1] != 2:
        raise ValueError(f"{what} must have shape N×2×H×W or 2×H×W, got {tuple(flow.shape)}")
    return flow


def _check_flow_matches(flow: Tensor, ref: Tensor, flow_name: str, ref_name: str) -> None:
    if flow.shape[0] != ref.shape[0] or flow.shape[-2:] != ref.shape[-2:]:
        raise ValueError(
            f"{flow_name} shape {tuple(flow.shape)} does not match {ref_name} shape "
            f"{tuple(ref.shape)} (expected N×2×H×W with the same N, H, W)"
        )


def _default_warp() -> WarpFn:
    try:
        from model.warp import warp  # the project's bilinear, border-clamped warp
    except ImportError as exc:  # pragma: no cover - depends on the state of model/
        raise ImportError(
            "the forward-backward consistency check needs model.warp.warp (bilinear sampling "
            "with border clamping); it is not importable, pass warp_fn=... explicitly"
        ) from exc
    return warp


def _dist_ready() -> bool:
    return dist.is_available() and dist.is_initialized()


def _all_reduce_sum(t: Tensor, group=None) -> Tensor:
    """Sum ``t`` over all processes of ``group``; returns a new tensor on ``t``'s device."""
    if not _dist_ready():
        return t
    work = t.detach().clone()
    if dist.get_backend(group) == "nccl" and work.device.type != "cuda":
        work = work.cuda(torch.cuda.current_device())
    dist.all_reduce(work, op=dist.ReduceOp.SUM, group=group)
    return work.to(t.device)


# ----------------------------------------------------------------------------------------------
# confusion matrix
# ----------------------------------------------------------------------------------------------
class ConfusionMatrix:
    """C×C int64 confusion matrix, rows = label, columns = prediction.

    ``M[i, j]`` = number of pixels whose label is ``i`` and whose prediction is ``j``.  Pixels
    whose label equals ``ignore_index`` are skipped.  Counting uses ``torch.bincount`` on the
    device of the inputs; the matrix lives on the device of the first update (``device`` before
    that) and stays int64, so it is exact for any number of pixels below 2**63.

    * ``iou()``: per-class ``TP / (TP + FP + FN)`` as a float64 tensor, NaN for a class whose
      union is empty (it neither occurs in the labels nor is predicted on labelled pixels).
    * ``miou()``: mean IoU over the classes with a non-empty union (NaN classes are excluded, the
      original's convention); NaN if the matrix is empty.
    * ``pixel_accuracy()``: ``trace(M) / sum(M)`` (NaN if empty).
    * ``all_reduce()``: sums the matrix over the processes of the default (or given) process
      group when ``torch.distributed`` is initialised; a no-op otherwise.

    With ``validate=True`` (default) labels outside ``[0, C)`` other than ``ignore_index`` and
    predictions outside ``[0, C)`` at labelled pixels raise ``ValueError`` (this costs one
    device synchronisation per update).
    """

    def __init__(
        self,
        num_classes: int,
        ignore_index: int = 255,
        device: Union[str, torch.device, None] = None,
        validate: bool = True,
    ) -> None:
        if int(num_classes) < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = int(num_classes)
        self.ignore_index = int(ignore_index)
        self.validate = bool(validate)
        self.matrix = torch.zeros(
            self.num_classes, self.num_classes, dtype=torch.int64,
            device=torch.device(device) if device is not None else torch.device("cpu"),
        )
        self._placed = device is not None

    # -- accumulation -------------------------------------------------------------------------
    def update(self, pred: Tensor, label: Tensor) -> "ConfusionMatrix":
        """Add the pixels of ``pred`` vs ``label`` (same shape, any number of dimensions)."""
        if not isinstance(pred, Tensor) or not isinstance(label, Tensor):
            raise TypeError("pred and label must be torch.Tensor")
        if pred.shape != label.shape:
            raise ValueError(
                f"pred shape {tuple(pred.shape)} does not match label shape {tuple(label.shape)}"
            )
        pred = _as_class_map(pred, "pred")
        label = _as_class_map(label, "label")
        if pred.device != label.device:
            pred = pred.to(label.device)
        if not self._placed:
            self.matrix = self.matrix.to(label.device)
            self._placed = True
        C = self.num_classes
        label = label.reshape(-1)
        pred = pred.reshape(-1)
        keep = label != self.ignore_index
        label = label[keep]
        pred = pred[keep]
        if label.numel() == 0:
            return self
        if self.validate:
            lmin, lmax = torch.aminmax(label)
            pmin, pmax = torch.aminmax(pred)
            lmin, lmax, pmin, pmax = (int(v) for v in torch.stack([lmin, lmax, pmin, pmax]).tolist())
            if lmin < 0 or lmax >= C:
                raise ValueError(
                    f"label values must be in [0, {C}) or equal ignore_index={self.ignore_index}; "
                    f"found values in [{lmin}, {lmax}]"
                )
            if pmin < 0 or pmax >= C:
                raise ValueError(
                    f"pred values must be in [0, {C}) at labelled pixels; found values in "
                    f"[{pmin}, {pmax}]"
                )
        counts = torch.bincount(label * C + pred, minlength=C * C).reshape(C, C)
        self.matrix += counts.to(self.matrix.device)
        return self

    def reset(self) -> "ConfusionMatrix":
        self.matrix.zero_()
        return self

    # -- results ------------------------------------------------------------------------------
    @property
    def total(self) -> int:
        """Number of counted (labelled) pixels."""
        return int(self.matrix.sum())

    def iou(self) -> Tensor:
        """Per-class IoU (float64, CPU), NaN where the union is empty."""
        m = self.matrix.detach().to("cpu", torch.float64)
        tp = m.diagonal()
        union = m.sum(0) + m.sum(1) - tp
        iou = torch.full_like(tp, float("nan"))
        nz = union > 0
        iou[nz] = tp[nz] / union[nz]
        return iou

    def miou(self) -> float:
        """Mean IoU over the classes with a non-empty union (NaN if there is none)."""
        iou = self.iou()
        valid = ~torch.isnan(iou)
        if not bool(valid.any()):
            return float("nan")
        return float(iou[valid].mean())

    def pixel_accuracy(self) -> float:
        m = self.matrix.detach().to("cpu", torch.float64)
        total = float(m.sum())
        return float(m.diagonal().sum()) / total if total > 0 else float("nan")

    def class_accuracy(self) -> Tensor:
        """Per-class recall ``TP / (TP + FN)`` (float64), NaN for classes absent from the labels."""
        m = self.matrix.detach().to("cpu", torch.float64)
        rows = m.sum(1)
        acc = torch.full_like(rows, float("nan"))
        nz = rows > 0
        acc[nz] = m.diagonal()[nz] / rows[nz]
        return acc

    def summary(self) -> Dict[str, object]:
        """JSON-ready results; an empty class's IoU is ``None``."""
        return {
            "miou": _nan_to_none(self.miou()),
            "pixel_accuracy": _nan_to_none(self.pixel_accuracy()),
            "iou": [_nan_to_none(v) for v in self.iou().tolist()],
            "num_pixels": self.total,
        }

    # -- distributed / persistence ------------------------------------------------------------
    def all_reduce(self, group=None) -> "ConfusionMatrix":
        """Sum the matrix over all processes (in place) when torch.distributed is initialised."""
        self.matrix = _all_reduce_sum(self.matrix, group)
        return self

    def state_dict(self) -> Dict[str, object]:
        return {
            "num_classes": self.num_classes,
            "ignore_index": self.ignore_index,
            "matrix": self.matrix.detach().cpu().clone(),
        }

    def load_state_dict(self, state: Dict[str, object]) -> "ConfusionMatrix":
        self._check_compatible(state["num_classes"], state["ignore_index"])
        mat = torch.as_tensor(state["matrix"], dtype=torch.int64)
        if mat.shape != (self.num_classes, self.num_classes):
            raise ValueError(f"matrix shape {tuple(mat.shape)} is not {self.num_classes}×{self.num_classes}")
        self.matrix = mat.to(self.matrix.device).clone()
        return self

    @classmethod
    def from_state_dict(cls, state: Dict[str, object]) -> "ConfusionMatrix":
        return cls(int(state["num_classes"]), int(state["ignore_index"])).load_state_dict(state)

    def merge(self, other: Union["ConfusionMatrix", Dict[str, object], Tensor]) -> "ConfusionMatrix":
        """Add another matrix (a ConfusionMatrix, its state_dict, or a C×C tensor) in place."""
        if isinstance(other, ConfusionMatrix):
            self._check_compatible(other.num_classes, other.ignore_index)
            mat = other.matrix
        elif isinstance(other, dict):
            self._check_compatible(other["num_classes"], other["ignore_index"])
            mat = torch.as_tensor(other["matrix"])
        else:
            mat = torch.as_tensor(other)
            if mat.shape != (self.num_classes, self.num_classes):
                raise ValueError(
                    f"cannot merge a matrix of shape {tuple(mat.shape)} into a "
                    f"{self.num_classes}×{self.num_classes} confusion matrix"
                )
        if mat.is_floating_point():
            raise TypeError("confusion matrices hold integer counts")
        self.matrix += mat.to(self.matrix.device, torch.int64)
        return self

    def __iadd__(self, other):
        return self.merge(other)

    def _check_compatible(self, num_classes, ignore_index) -> None:
        if int(num_classes) != self.num_classes:
            raise ValueError(f"cannot combine matrices of {num_classes} and {self.num_classes} classes")
        if int(ignore_index) != self.ignore_index:
            raise ValueError(
                f"cannot combine matrices with ignore_index {ignore_index} and {self.ignore_index}"
            )

    def __repr__(self) -> str:
        return (
            f"ConfusionMatrix(num_classes={self.num_classes}, ignore_index={self.ignore_index}, "
            f"pixels={self.total})"
        )


def _nan_to_none(v: float) -> Optional[float]:
    return None if (v is None or math.isnan(v)) else float(v)


# ----------------------------------------------------------------------------------------------
# flow helpers for class maps
# ----------------------------------------------------------------------------------------------
def _rounded_targets(flow: Tensor):
    """Nearest-pixel target of every pixel: (ix, iy) clamped into the frame, and in-frame mask.

    The target of pixel (x, y) is (floor(x + dx + 0.5), floor(y + dy + 0.5)) (round half up).  It
    is in the frame when 0 <= ix < W and 0 <= iy < H, i.e. -0.5 <= x + dx < W - 0.5 and likewise
    for y.  Non-finite flow values count as out of the frame.
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
    flow = _as_flow_batch(flow, "flow")
    return _rounded_targets(flow)[2]


def warp_labels(labels: Tensor, flow: Tensor, fill_value: Optional[int] = None) -> Tensor:
    """Warp a class map with nearest-neighbour sampling.

    ``out(x, y) = labels(round(x + dx), round(y + dy))`` where ``round(v) = floor(v + 0.5)`` and
    ``flow`` is in the backward convention (``flow_a→b`` warps a map of frame ``b`` onto frame
    ``a``).  Targets outside the frame are clamped to the border (like the feature warp) when
    ``fill_value`` is None, otherwise those pixels are set to ``fill_value`` (e.g. the ignore
    index, which is what the temporal measures use).

    Args:
        labels: int tensor N×H×W or H×W.
        flow: float tensor N×2×H×W or 2×H×W (same N, H, W).
    Returns:
        int64 tensor with the shape of ``labels``.
    """
    squeeze = labels.dim() == 2
    lab = _as_batch(_as_class_map(labels, "labels"), "labels")
    flow = _as_flow_batch(flow, "flow")
    _check_flow_matches(flow, lab, "flow", "labels")
    flow = flow.to(lab.device)
    n, h, w = lab.shape
    ix, iy, inside = _rounded_targets(flow)
    out = lab.reshape(n, h * w).gather(1, (iy * w + ix).reshape(n, h * w)).reshape(n, h, w)
    if fill_value is not None:
        out = torch.where(inside, out, torch.full_like(out, int(fill_value)))
    return out[0] if squeeze else out


def fb_consistency_mask(
    flow_fwd: Tensor,
    flow_bwd: Tensor,
    warp_fn: Optional[WarpFn] = None,
    alpha: float = 0.01,
    beta: float = 0.5,
) -> Tensor:
    """Forward-backward consistency mask (Sundaram et al. 2010), bool N×H×W on frame ``t``.

    ``flow_fwd`` = ``w_f`` = flow_t→t+1 (pixel x of frame t is found at ``x + w_f(x)`` in frame
    t+1) and ``flow_bwd`` = ``w_b`` = flow_t+1→t, both in the backward convention.  With
    ``ŵ_b(x) = w_b(x + w_f(x))`` sampled bilinearly (``warp_fn(flow_bwd, flow_fwd)``, by default
    ``model.warp.warp``), pixel x is valid iff

        |w_f(x) + ŵ_b(x)|² < alpha·(|w_f(x)|² + |ŵ_b(x)|²) + beta      (alpha=0.01, beta=0.5)

    and its rounded target ``round(x + w_f(x))`` lies inside frame t+1.  (Sundaram et al.'s
    second criterion, the motion-boundary test on the flow gradient, is not applied.)
    """
    flow_fwd = _as_flow_batch(flow_fwd, "flow_fwd")
    flow_bwd = _as_flow_batch(flow_bwd, "flow_bwd")
    if flow_fwd.shape != flow_bwd.shape:
        raise ValueError(
            f"flow_fwd shape {tuple(flow_fwd.shape)} does not match flow_bwd shape "
            f"{tuple(flow_bwd.shape)}"
        )
    warp_fn = warp_fn if warp_fn is not None else _default_warp()
    flow_bwd = flow_bwd.to(flow_fwd.device, flow_fwd.dtype)
    wb = warp_fn(flow_bwd, flow_fwd)
    lhs = (flow_fwd + wb).pow(2).sum(1)
    rhs = alpha * (flow_fwd.pow(2).sum(1) + wb.pow(2).sum(1)) + beta
    return (lhs < rhs) & _rounded_targets(flow_fwd)[2]


# ----------------------------------------------------------------------------------------------
# temporal consistency between consecutive predictions
# ----------------------------------------------------------------------------------------------
class TemporalConsistency:
    """Streaming temporal consistency of predictions on consecutive frames.

    For a pair of consecutive frames (t, t+1) with predictions ``P_t``, ``P_t+1``, the
    **reference frame is t**: ``P_t+1`` is warped back onto frame t with the forward flow
    ``w_f = flow_t→t+1`` (backward convention: pixel x of frame t is found at ``x + w_f(x)`` in
    frame t+1; this is ``estimator(current=frame_t, previous=frame_t+1)``) using
    nearest-neighbour sampling, ``Q_t(x) = P_t+1(round(x + w_f(x)))`` (:func:`warp_labels`).

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
        flow_estimator=None,
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
        p0 = _as_batch(_as_class_map(pred_t, "pred_t"), "pred_t")
        p1 = _as_batch(_as_class_map(pred_next, "pred_next"), "pred_next").to(p0.device)
        wf = _as_flow_batch(flow_fwd, "flow_fwd").to(p0.device)
        _check_flow_matches(wf, p0, "flow_fwd", "pred_t")
        n, h, w = p0.shape
        ix, iy, inside = _rounded_targets(wf)
        warped = p1.reshape(n, h * w).gather(1, (iy * w + ix).reshape(n, h * w)).reshape(n, h, w)
        keep = inside if self.out_of_frame == "ignore" else torch.ones_like(inside)
        ref = torch.where(keep, p0, torch.full_like(p0, -1))
        self.cm_etc.update(warped, ref)
        counts = [n, n * h * w, int(keep.sum()), 0, 0, 0]
        if flow_bwd is not None:
            wb = _as_flow_batch(flow_bwd, "flow_bwd").to(p0.device)
            _check_flow_matches(wb, p0, "flow_bwd", "pred_t")
            valid = fb_consistency_mask(wf, wb, self._warp(), self.alpha, self.beta)
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
        pred = _as_batch(_as_class_map(pred, "pred"), "pred")
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
        c = self._counts.tolist()
        fb_pairs = c[3]
        return {
            "tc_etc": _nan_to_none(self.cm_etc.miou()),
            "tc_fb": _nan_to_none(self.cm_fb.miou()) if fb_pairs else None,
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
        self.cm_etc.reset()
        self.cm_fb.reset()
        self._counts.zero_()
        return self.new_clip()

    def all_reduce(self, group=None) -> "TemporalConsistency":
        self.cm_etc.all_reduce(group)
        self.cm_fb.all_reduce(group)
        self._counts = _all_reduce_sum(self._counts, group)
        return self

    def state_dict(self) -> Dict[str, object]:
        return {
            "cm_etc": self.cm_etc.state_dict(),
            "cm_fb": self.cm_fb.state_dict(),
            "counts": self._counts.clone(),
        }

    def load_state_dict(self, state: Dict[str, object]) -> "TemporalConsistency":
        self.cm_etc.load_state_dict(state["cm_etc"])
        self.cm_fb.load_state_dict(state["cm_fb"])
        self._counts = torch.as_tensor(state["counts"], dtype=torch.int64).clone()
        return self

    def merge(self, other: Union["TemporalConsistency", Dict[str, object]]) -> "TemporalConsistency":
        state = other.state_dict() if isinstance(other, TemporalConsistency) else other
        self.cm_etc.merge(state["cm_etc"])
        self.cm_fb.merge(state["cm_fb"])
        self._counts += torch.as_tensor(state["counts"], dtype=torch.int64)
        return self

    def _warp(self) -> WarpFn:
        if self.warp_fn is None:
            self.warp_fn = _default_warp()
        return self.warp_fn


# ----------------------------------------------------------------------------------------------
# VSPW video consistency
# ----------------------------------------------------------------------------------------------
class VideoConsistency:
    """Streaming VSPW video consistency ``VC_n`` over clips labelled on every frame.

    Source: Miao et al., "VSPW: A Large-scale Dataset for Video Scene Parsing in the Wild",
    CVPR 2021, Sec. "Video Consistency", and the official evaluation script ``VC_perclip.py``
    of github.com/VSPW-dataset/VSPW_code, which this class reproduces.  For a clip of C frames
    with ground truth ``GT_1..GT_C`` and predictions ``P_1..P_C``, and a window
    ``W_i = {i, ..., i+n-1}``:

    * ``A_i`` = pixel positions (x, y) where ``GT_k(x, y)`` is identical for all k in ``W_i``
      (the paper's ``∩_k GT_k``; summing this per class gives the same set);
    * ``B_i`` = positions where ``P_k(x, y)`` is identical for all k in ``W_i`` (``∩_k P_k``);
    * ``VC_i = |A_i ∩ B_i| / |A_i|``, and ``VC_n`` = mean of ``VC_i`` over all windows of all
      clips with ``|A_i| > 0`` (the script's ``np.nanmean`` over the list of windows).

    Windows: the paper and the script use windows i = 1..C-n, i.e. a window is counted only
    when a frame follows it (``range(len(list_) - clip_num)``), so a clip of exactly n frames
    gives no window; ``drop_last_window=False`` also counts the final window (C-n+1 windows).

    Note on "∩ P": the official script does **not** require the constant prediction to equal
    the ground truth (the value ``vc``).  The stricter reading of the paper's formula as an
    intersection of (position, class) sets, where the prediction must also equal the constant
    ground truth, is reported alongside as ``vc_correct`` = mean of
    ``|{x ∈ A_i ∩ B_i : P(x) = GT(x)}| / |A_i|`` over the same windows.

    ``ignore_index``: the official script has none (void is a class like any other; default
    ``None``).  When set, positions whose ground truth equals ``ignore_index`` in any frame of
    the window are removed from ``A_i``.

    Memory is O(H·W) per clip: per pixel the length of the current run of identical ground
    truth / predictions (capped at n) and the previous frame's maps.  Feed frames in order with
    :meth:`update`, call :meth:`new_clip` between clips.
    """

    def __init__(self, n: int = 8, ignore_index: Optional[int] = None, drop_last_window: bool = True) -> None:
        if int(n) < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        self.n = int(n)
        self.ignore_index = None if ignore_index is None else int(ignore_index)
        self.drop_last_window = bool(drop_last_window)
        # sum of VC_i, sum of strict VC_i (float64), windows counted, windows with empty A_i
        self._sums = torch.zeros(2, dtype=torch.float64)
        self._windows = torch.zeros(2, dtype=torch.int64)
        self.new_clip()

    def new_clip(self) -> "VideoConsistency":
        self._run_gt: Optional[Tensor] = None
        self._run_pred: Optional[Tensor] = None
        self._prev_gt: Optional[Tensor] = None
        self._prev_pred: Optional[Tensor] = None
        self._frames = 0
        return self

    def update(self, pred: Tensor, label: Tensor) -> "VideoConsistency":
        """Add the next frame(s) of the current clip: H×W, or T×H×W = T consecutive frames."""
        if pred.shape != label.shape:
            raise ValueError(
                f"pred shape {tuple(pred.shape)} does not match label shape {tuple(label.shape)}"
            )
        pred = _as_batch(_as_class_map(pred, "pred"), "pred")
        label = _as_batch(_as_class_map(label, "label"), "label").to(pred.device)
        for p, g in zip(pred, label):
            self._step(p, g)
        return self

    def _step(self, p: Tensor, g: Tensor) -> None:
        n = self.n
        if self._prev_gt is not None and self._prev_gt.shape != g.shape:
            raise ValueError(
                f"frame of shape {tuple(g.shape)} differs from the previous frame's "
                f"{tuple(self._prev_gt.shape)} (call new_clip() between clips)"
            )
        if self.drop_last_window and self._frames >= n:
            self._count_window()  # the window ending at the previous frame has a successor
        valid = torch.ones_like(g, dtype=torch.bool) if self.ignore_index is None else g != self.ignore_index
        if self._frames == 0:
            self._run_gt = valid.to(torch.int32)
            self._run_pred = torch.ones_like(p, dtype=torch.int32)
            if self._sums.device != g.device:
                self._sums = self._sums.to(g.device)
                self._windows = self._windows.to(g.device)
        else:
            same_g = (g == self._prev_gt) & valid
            self._run_gt = torch.where(same_g, (self._run_gt + 1).clamp_max(n), valid.to(torch.int32))
            self._run_pred = torch.where(p == self._prev_pred, (self._run_pred + 1).clamp_max(n),
                                         torch.ones_like(self._run_pred))
        self._prev_gt = g
        self._prev_pred = p
        self._frames += 1
        if not self.drop_last_window and self._frames >= n:
            self._count_window()

    def _count_window(self) -> None:
        """Count the window of n frames ending at the stored previous frame."""
        a = self._run_gt >= self.n
        ab = a & (self._run_pred >= self.n)
        abc = ab & (self._prev_pred == self._prev_gt)
        size = a.sum().to(torch.float64)
        nonempty = size > 0
        denom = torch.where(nonempty, size, torch.ones_like(size))
        ratios = torch.stack([ab.sum(), abc.sum()]).to(torch.float64) / denom
        self._sums += torch.where(nonempty, ratios, torch.zeros_like(ratios))
        self._windows += torch.stack([nonempty.long(), (~nonempty).long()])

    def compute(self) -> Dict[str, object]:
        sums = self._sums.cpu().tolist()
        counted, empty = self._windows.cpu().tolist()
        return {
            "n": self.n,
            "vc": sums[0] / counted if counted else None,
            "vc_correct": sums[1] / counted if counted else None,
            "num_windows": counted,
            "num_empty_windows": empty,
            "definition": "VSPW VC_n (official VC_perclip.py): mean over windows of "
            "|GT constant & pred constant| / |GT constant|",
        }

    def reset(self) -> "VideoConsistency":
        self._sums = torch.zeros(2, dtype=torch.float64)
        self._windows = torch.zeros(2, dtype=torch.int64)
        return self.new_clip()

    def all_reduce(self, group=None) -> "VideoConsistency":
        self._sums = _all_reduce_sum(self._sums, group)
        self._windows = _all_reduce_sum(self._windows, group)
        return self

    def state_dict(self) -> Dict[str, object]:
        return {"n": self.n, "sums": self._sums.cpu().clone(), "windows": self._windows.cpu().clone()}

    def load_state_dict(self, state: Dict[str, object]) -> "VideoConsistency":
        if int(state["n"]) != self.n:
            raise ValueError(f"cannot load VC_{state['n']} state into VC_{self.n}")
        self._sums = torch.as_tensor(state["sums"], dtype=torch.float64).to(self._sums.device).clone()
        self._windows = torch.as_tensor(state["windows"], dtype=torch.int64).to(self._windows.device).clone()
        return self

    def merge(self, other: Union["VideoConsistency", Dict[str, object]]) -> "VideoConsistency":
        state = other.state_dict() if isinstance(other, VideoConsistency) else other
        if int(state["n"]) != self.n:
            raise ValueError(f"cannot merge VC_{state['n']} into VC_{self.n}")
        self._sums += torch.as_tensor(state["sums"], dtype=torch.float64).to(self._sums.device)
        self._windows += torch.as_tensor(state["windows"], dtype=torch.int64).to(self._windows.device)
        return self


def video_consistency(
    preds: Union[Tensor, Sequence[Tensor]],
    labels: Union[Tensor, Sequence[Tensor]],
    n: int = 8,
    ignore_index: Optional[int] = None,
    drop_last_window: bool = True,
) -> Dict[str, object]:
    """``VC_n`` of one clip (T×H×W tensors or sequences of H×W maps); see :class:`VideoConsistency`."""
    vc = VideoConsistency(n, ignore_index=ignore_index, drop_last_window=drop_last_window)
    for p, g in zip(preds, labels):
        vc.update(p, g)
    return vc.compute()
