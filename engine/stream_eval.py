"""Score streaming predictors over clips: accuracy, temporal consistency (TC, tIoU) and VC_n.

Every predictor (:class:`engine.predictors.Predictor`) sees the frames of a clip in order; per
predictor the evaluator accumulates

* a confusion matrix on the frames that carry a label (mIoU, pixel accuracy);
* :class:`engine.metrics.TemporalConsistency` on every consecutive pair: ``tc_etc`` (ETC's measure)
  and ``tc_fb`` (the same over the pixels passing the forward-backward check; the temporal IoU),
  with the flows of one estimator computed once per pair and shared by all predictors;
* optionally :class:`engine.metrics.VideoConsistency` (VC_n) over runs of consecutive labelled
  frames: a frame without a label ends the run.

Definitions of the measures: docs/evaluation.md and :mod:`engine.metrics`.
"""
from __future__ import annotations

from typing import Callable, Mapping, Optional

import torch
from torch import Tensor

from engine.flow_estimators import FlowEstimator
from engine.metrics import ConfusionMatrix, TemporalConsistency, VideoConsistency
from engine.metrics.reduction import nan_to_none
from engine.predictors import Predictor

__all__ = ["StreamEvaluator", "clip_labels", "evaluate_clips"]


def clip_labels(sample: dict, device: torch.device | str) -> list[Optional[Tensor]]:
    """The label (H×W int64, on ``device``) of each frame of a clip sample, None where it has none:
    ``labels`` (T×H×W) when the sample labels every frame, else ``label`` on the last frame."""
    length = int(sample["frames"].shape[0])
    labels = sample.get("labels")
    if labels is not None:
        return [labels[t].to(device) for t in range(length)]
    return [None] * (length - 1) + [sample["label"].to(device)]


class StreamEvaluator:
    """Runs named predictors over clips frame by frame and scores each (see the module doc).

    Args:
        predictors: name → predictor; all see the same frames.
        num_classes, ignore_index: the label space.
        flow_estimator: the flows relating consecutive frames, ``estimator(current, previous)``.
        fb_check: also the forward-backward masked measure ``tc_fb`` (one more flow per pair).
        vc_n: window length of VC_n (None: no VC).
        device: where the confusion matrices accumulate.
    """

    def __init__(self, predictors: Mapping[str, Predictor], num_classes: int, ignore_index: int,
                 flow_estimator: FlowEstimator, fb_check: bool = True, vc_n: Optional[int] = None,
                 device: torch.device | str = "cpu") -> None:
        self.predictors = dict(predictors)
        self.estimator = flow_estimator
        self.fb_check = bool(fb_check)
        self.cm = {n: ConfusionMatrix(num_classes, ignore_index, device=device) for n in self.predictors}
        self.tc = {n: TemporalConsistency(num_classes, flow_source=flow_estimator.name, fb_check=fb_check)
                   for n in self.predictors}
        self.vc = ({n: VideoConsistency(vc_n, ignore_index=ignore_index) for n in self.predictors}
                   if vc_n is not None else {})
        self.new_clip()

    def new_clip(self) -> None:
        """Start a new clip: the predictors are reset and no pair links it to the previous frame."""
        for n, predictor in self.predictors.items():
            predictor.reset()
            self.tc[n].new_clip()
            if self.vc:
                self.vc[n].new_clip()
        self._previous_frame: Optional[Tensor] = None
        self._previous_preds: dict[str, Tensor] = {}
        self._labelled_run = False

    @torch.no_grad()
    def push(self, frame: Tensor, label: Optional[Tensor] = None) -> dict[str, Tensor]:
        """Step every predictor on the next frame of the clip (1×3×H×W) and score it; ``label`` (H×W)
        is the frame's ground truth, None when it has none. Returns the predictions (1×H×W)."""
        preds = {n: p.step(frame) for n, p in self.predictors.items()}
        if self._previous_frame is not None:
            flow_fwd = self.estimator(self._previous_frame, frame)
            flow_bwd = self.estimator(frame, self._previous_frame) if self.fb_check else None
            for n, pred in preds.items():
                self.tc[n].update(self._previous_preds[n], pred, flow_fwd, flow_bwd)
        if label is None:
            if self._labelled_run and self.vc:  # a gap in the labels ends the VC windows
                for vc in self.vc.values():
                    vc.new_clip()
            self._labelled_run = False
        else:
            self._labelled_run = True
            for n, pred in preds.items():
                self.cm[n].update(pred[0], label)
                if self.vc:
                    self.vc[n].update(pred[0], label)
        self._previous_frame = frame
        self._previous_preds = preds
        return preds

    def all_reduce(self) -> None:
        """Sum the counts over the processes of a distributed run."""
        for n in self.predictors:
            self.cm[n].all_reduce()
            self.tc[n].all_reduce()
            if self.vc:
                self.vc[n].all_reduce()

    def results(self) -> dict[str, dict]:
        """Per predictor: ``miou``, ``pixel_accuracy`` (None without labelled pixels), ``tc_etc``,
        ``tc_fb`` (None without ``fb_check``), ``in_frame_fraction``, ``fb_valid_fraction``,
        ``num_pairs``, and with VC ``vc``, ``vc_correct``, ``vc_n``, ``vc_windows``."""
        out = {}
        for n in self.predictors:
            tc = self.tc[n].compute()
            out[n] = {"miou": nan_to_none(self.cm[n].miou()),
                      "pixel_accuracy": nan_to_none(self.cm[n].pixel_accuracy()),
                      **{k: tc[k] for k in ("tc_etc", "tc_fb", "in_frame_fraction", "fb_valid_fraction",
                                            "num_pairs")}}
            if self.vc:
                vc = self.vc[n].compute()
                out[n].update(vc=vc["vc"], vc_correct=vc["vc_correct"], vc_n=vc["n"], vc_windows=vc["num_windows"])
        return out

    def description(self) -> dict[str, str]:
        """What the measures used: ``flow_source``, ``flow_description``, ``mask_etc``, ``mask_fb``
        and, with VC, ``vc_definition``."""
        tc = next(iter(self.tc.values())).compute()
        out = {"flow_source": self.estimator.name, "flow_description": self.estimator.description,
               "mask_etc": tc["mask_etc"], "mask_fb": tc["mask_fb"]}
        if self.vc:
            out["vc_definition"] = next(iter(self.vc.values())).compute()["definition"]
        return out


def evaluate_clips(evaluator: StreamEvaluator, dataset, device: torch.device | str, limit: Optional[int] = None,
                   on_clip: Optional[Callable[[int, int], None]] = None) -> StreamEvaluator:
    """Stream every clip of ``dataset`` (samples with ``frames`` T×3×H×W and ``label`` / ``labels``,
    :func:`clip_labels`) from its first frame through ``evaluator``; ``on_clip(i, count)`` after
    clip i (0-based) of the ``count`` evaluated. Returns the evaluator."""
    count = len(dataset) if limit is None else min(int(limit), len(dataset))
    for i in range(count):
        sample = dataset[i]
        frames = sample["frames"].to(device)
        evaluator.new_clip()
        for t, label in enumerate(clip_labels(sample, device)):
            evaluator.push(frames[t:t + 1], label)
        if on_clip is not None:
            on_clip(i, count)
    return evaluator
