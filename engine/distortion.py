"""How well a distortion map predicts where warping went wrong.

EVSS's fine map and DAVSS's DMNet map both estimate where the warped features are wrong. Against
the *true mismatch* of a window and keyframe distance d — the pixels where the plain-warping
prediction (the keyframe's logits warped along the d chained flows, ×4) differs from the keyframe
network's own prediction on the current frame — the map thresholded at ``threshold`` (pixel
predicted distorted when map ≥ threshold) gives per distance, summed over all windows' pixels:

* precision = TP / (TP + FP), recall = TP / (TP + FN), IoU = TP / (TP + FP + FN) (None when the
  denominator is 0);
* ``l1``: mean |map − mismatch| (the original DMNet stage's validation measure);
* ``mismatch_rate`` and ``predicted_rate``: the shares of pixels truly / predicted distorted;
* threshold-free: ``ap`` (average precision, Σ precision·Δrecall over thresholds descending in
  steps of 1/``bins``) and ``best_iou`` with its ``best_threshold`` (a map trained with BCE on a rare
  target can rank the mismatch well and still stay below 0.5 everywhere).

No ground-truth label is involved: the reference is the keyframe network itself, as in DMNet's
training target. Maps and predictions are at full resolution, cropped to the frame size.
"""
from __future__ import annotations

from typing import Dict, Iterable, Mapping, Optional, Sequence

import torch
import torch.distributed as dist
from torch import Tensor
from tqdm import tqdm

from engine.evaluate import WindowEvaluator

__all__ = ["DistortionQuality", "MAP_KEYS", "evaluate_distortion"]

#: Full-resolution distortion map in a net's ``rectify`` output: EVSS's fine map, DAVSS's DMNet map ×4.
MAP_KEYS = ("dm_fine", "dm_up")


class DistortionQuality:
    """Accumulates TP/FP/FN/TN and the L1 error of thresholded maps against a boolean mismatch."""

    def __init__(self, threshold: float = 0.5, device: str | torch.device = "cpu", bins: int = 100):
        self.threshold = float(threshold)
        self.bins = int(bins)
        self.counts = torch.zeros(4, dtype=torch.int64, device=device)   # tp, fp, fn, tn
        self.l1 = torch.zeros((), dtype=torch.float64, device=device)
        # map values per bin [i/bins, (i+1)/bins) (1.0 in the last), for mismatched / matching pixels
        self.histogram = torch.zeros(2, self.bins, dtype=torch.int64, device=device)

    def update(self, dm: Tensor, mismatch: Tensor) -> None:
        """``dm``: map in [0, 1]; ``mismatch``: bool of the same shape (extra leading 1-dims allowed)."""
        dm = dm.detach().reshape(mismatch.shape).to(self.l1.device)
        truth = mismatch.to(self.l1.device, torch.bool)
        predicted = dm >= self.threshold
        self.counts += torch.stack([(predicted & truth).sum(), (predicted & ~truth).sum(),
                                    (~predicted & truth).sum(), (~predicted & ~truth).sum()])
        self.l1 += (dm.double() - truth.double()).abs().sum()
        index = (dm.double() * self.bins).floor().clamp(0, self.bins - 1).long()
        for row, pixels in ((0, truth), (1, ~truth)):
            self.histogram[row] += torch.bincount(index[pixels], minlength=self.bins)

    def all_reduce(self) -> None:
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(self.counts)
            dist.all_reduce(self.l1)
            dist.all_reduce(self.histogram)

    def compute(self) -> Dict[str, Optional[float]]:
        tp, fp, fn, tn = (int(v) for v in self.counts.tolist())
        total = tp + fp + fn + tn

        def ratio(a: int, b: int) -> Optional[float]:
            return a / b if b else None

        out = {"precision": ratio(tp, tp + fp), "recall": ratio(tp, tp + fn), "iou": ratio(tp, tp + fp + fn),
               "l1": float(self.l1) / total if total else None, "mismatch_rate": ratio(tp + fn, total),
               "predicted_rate": ratio(tp + fp, total), "pixels": total, "threshold": self.threshold}
        return {**out, **self._sweep()}

    def _sweep(self) -> Dict[str, Optional[float]]:
        """AP and the best IoU over the thresholds i/bins (pixels with map ≥ i/bins predicted)."""
        tps = self.histogram[0].flip(0).cumsum(0).tolist()   # thresholds (bins-1)/bins, ..., 0
        fps = self.histogram[1].flip(0).cumsum(0).tolist()
        positives = tps[-1] if tps else 0
        if not positives:
            return {"ap": None, "best_iou": None, "best_threshold": None}
        ap, recall_before, best_iou, best_threshold = 0.0, 0.0, -1.0, None
        for i, (tp, fp) in enumerate(zip(tps, fps)):
            if tp + fp == 0:
                continue
            recall = tp / positives
            ap += tp / (tp + fp) * (recall - recall_before)
            recall_before = recall
            iou = tp / (fp + positives)
            if iou > best_iou:
                best_iou, best_threshold = iou, (self.bins - 1 - i) / self.bins
        return {"ap": ap, "best_iou": best_iou, "best_threshold": best_threshold}


def _full_map(rectified: Mapping[str, Tensor], size: tuple[int, int]) -> Tensor:
    for key in MAP_KEYS:
        if key in rectified:
            return rectified[key][..., :size[0], :size[1]]
    raise KeyError(f"the net's rectify output has none of {MAP_KEYS}")


@torch.no_grad()
def evaluate_distortion(nets: Mapping[str, torch.nn.Module], dataset, distances: Sequence[int],
                        device: str | torch.device = "cpu", indices: Optional[Iterable[int]] = None,
                        threshold: float = 0.5, progress: bool = True) -> Dict[str, Dict[int, dict]]:
    """Distortion-map quality of each net per keyframe distance (see the module doc).

    Args:
        nets: name → EVSS or DAVSS net (put in eval mode here, mode restored after).
        dataset: evaluation windows (``frames`` T×3×H×W, labelled frame last).
        distances: keyframe distances d ≥ 1 (≤ T − 1).
        indices: windows to use (default: all); under ``torch.distributed`` pass each rank's share,
            the counts are summed over the processes.
        threshold: a pixel is predicted distorted where the map is ≥ this.

    Returns ``{name: {d: DistortionQuality.compute()}}``.
    """
    distances = [int(d) for d in distances]
    if not distances or min(distances) < 1:
        raise ValueError(f"distances must be >= 1, got {distances}")
    device = torch.device(device)
    quality = {n: {d: DistortionQuality(threshold, device) for d in distances} for n in nets}
    modes = {n: net.training for n, net in nets.items()}
    indices = list(range(len(dataset)) if indices is None else indices)
    bar = None
    if progress:
        bar = tqdm(total=len(indices), desc="distortion maps", unit="window", dynamic_ncols=True)
    try:
        for net in nets.values():
            net.eval()
        for i in indices:
            frames = dataset[i]["frames"].to(device)
            if max(distances) > frames.shape[0] - 1:
                raise ValueError(f"distance {max(distances)} needs windows of {max(distances) + 1} frames, "
                                 f"got {frames.shape[0]}")
            for name, net in nets.items():
                window = WindowEvaluator(net, frames)
                reference = window.keyframe_pred()
                for d in distances:
                    out = window.distance(d)
                    quality[name][d].update(_full_map(out["rectified"], window.size), out["pred_warp"] != reference)
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
        for name, net in nets.items():
            net.train(modes[name])
    results = {}
    for name, per_d in quality.items():
        for q in per_d.values():
            q.all_reduce()
        results[name] = {d: q.compute() for d, q in per_d.items()}
    return results
