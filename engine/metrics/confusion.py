"""Confusion matrix of class maps, and the IoU / accuracy measures read from it.

``M[i, j]`` (C×C, int64) counts pixels whose label (ground truth, or a reference map) is ``i``
and whose prediction is ``j``: rows = label, columns = prediction.

* ``IoU_c = M[c, c] / (sum_j M[c, j] + sum_i M[i, c] - M[c, c])``; NaN when that union is 0.
* ``mIoU`` = mean of ``IoU_c`` over the classes with a non-empty union.
* Pixel accuracy = ``trace(M) / sum(M)``.
"""
from __future__ import annotations

from typing import Dict, Optional, Union

import torch
import torch.distributed as dist
from torch import Tensor

from model.label_warp import as_class_map

from .reduction import all_reduce_sum, nan_to_none


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
        pred = as_class_map(pred, "pred")
        label = as_class_map(label, "label")
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
        """Zero the counts (the matrix keeps its device)."""
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
        """``trace(M) / sum(M)`` (NaN if nothing was counted)."""
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
            "miou": nan_to_none(self.miou()),
            "pixel_accuracy": nan_to_none(self.pixel_accuracy()),
            "iou": [nan_to_none(v) for v in self.iou().tolist()],
            "num_pixels": self.total,
        }

    # -- distributed / persistence ------------------------------------------------------------
    def all_reduce(self, group: Optional[dist.ProcessGroup] = None) -> "ConfusionMatrix":
        """Sum the matrix over all processes (in place) when torch.distributed is initialised."""
        self.matrix = all_reduce_sum(self.matrix, group)
        return self

    def state_dict(self) -> Dict[str, object]:
        """Classes, ignore index and the matrix (a CPU copy): what :meth:`merge` and checkpoints take."""
        return {
            "num_classes": self.num_classes,
            "ignore_index": self.ignore_index,
            "matrix": self.matrix.detach().cpu().clone(),
        }

    def load_state_dict(self, state: Dict[str, object]) -> "ConfusionMatrix":
        """Replace the counts by those of a :meth:`state_dict` of the same classes and ignore index."""
        self._check_compatible(state["num_classes"], state["ignore_index"])
        mat = torch.as_tensor(state["matrix"], dtype=torch.int64)
        if mat.shape != (self.num_classes, self.num_classes):
            raise ValueError(f"matrix shape {tuple(mat.shape)} is not {self.num_classes}×{self.num_classes}")
        self.matrix = mat.to(self.matrix.device).clone()
        return self

    @classmethod
    def from_state_dict(cls, state: Dict[str, object]) -> "ConfusionMatrix":
        """A new matrix (on the CPU) holding the counts of a :meth:`state_dict`."""
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

    def __iadd__(self, other: Union["ConfusionMatrix", Dict[str, object], Tensor]) -> "ConfusionMatrix":
        return self.merge(other)

    def _check_compatible(self, num_classes: int, ignore_index: int) -> None:
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
