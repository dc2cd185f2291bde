"""VSPW video consistency ``VC_n``: how often a prediction stays constant where the ground truth does.

Unlike the temporal consistency, it needs no optical flow but clips labelled on every frame;
the definition and its sources are in :class:`VideoConsistency`.
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence, Union

import torch
import torch.distributed as dist
from torch import Tensor

from model.label_warp import as_class_batch, as_class_map

from .reduction import all_reduce_sum


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
        """Forget the current clip's runs (the next frame starts a new clip; results are kept)."""
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
        pred = as_class_batch(as_class_map(pred, "pred"), "pred")
        label = as_class_batch(as_class_map(label, "label"), "label").to(pred.device)
        for p, g in zip(pred, label):
            self._step(p, g)
        return self

    def _step(self, p: Tensor, g: Tensor) -> None:
        """Advance the per-pixel runs by one H×W frame, counting the windows it completes."""
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
        """JSON-ready results: ``vc``, ``vc_correct`` (None before any window) and window counts."""
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
        """Forget every counted window and the current clip."""
        self._sums = torch.zeros(2, dtype=torch.float64)
        self._windows = torch.zeros(2, dtype=torch.int64)
        return self.new_clip()

    def all_reduce(self, group: Optional[dist.ProcessGroup] = None) -> "VideoConsistency":
        """Sum the window sums and counts over all processes (no-op without a process group)."""
        self._sums = all_reduce_sum(self._sums, group)
        self._windows = all_reduce_sum(self._windows, group)
        return self

    def state_dict(self) -> Dict[str, object]:
        """``n``, the window sums and counts on the CPU (not the current clip's runs)."""
        return {"n": self.n, "sums": self._sums.cpu().clone(), "windows": self._windows.cpu().clone()}

    def load_state_dict(self, state: Dict[str, object]) -> "VideoConsistency":
        """Replace the accumulated results by those of a :meth:`state_dict` with the same ``n``."""
        if int(state["n"]) != self.n:
            raise ValueError(f"cannot load VC_{state['n']} state into VC_{self.n}")
        self._sums = torch.as_tensor(state["sums"], dtype=torch.float64).to(self._sums.device).clone()
        self._windows = torch.as_tensor(state["windows"], dtype=torch.int64).to(self._windows.device).clone()
        return self

    def merge(self, other: Union["VideoConsistency", Dict[str, object]]) -> "VideoConsistency":
        """Add the results of another measure (or its :meth:`state_dict`) with the same ``n``."""
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
