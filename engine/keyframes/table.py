"""The propagation table of a clip: every frame segmented from every keyframe within a horizon.

Corrections never propagate (:mod:`model.stream`), so the prediction at frame t of a stream depends
only on its last keyframe j ≤ t. Running ``step(frames[j], keyframe=True)`` and then
``step(frames[t], keyframe=False)`` for t = j+1 .. j+horizon−1, for every start j, therefore gives
every prediction any keyframe schedule can produce on the clip (intervals below the horizon): a
schedule can be replayed on the table without the network (:mod:`engine.keyframes.simulate`), and the
best schedule with hindsight found on it (:mod:`engine.keyframes.oracle`).

Entries are indexed ``[j, d]`` with d = t − j in 0 .. horizon−1; those past the clip's end are empty.
"""
from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from engine.flow_estimators import FlowEstimator
from engine.metrics import ConfusionMatrix
from model.schedule import SIGNALS, distortion_signal
from model.stream import StreamingNet

__all__ = ["PropagationTable", "StepTimes", "build_table", "clip_flows"]


@dataclass
class StepTimes:
    """Median wall times (ms) of a keyframe step, a propagation step (flow, warp, correction) and of
    reading each distortion statistic of a propagated frame (its map and the statistic)."""

    key_ms: float
    propagate_ms: float
    signal_ms: dict[str, float]

    @classmethod
    def pooled(cls, tables: Sequence["PropagationTable"]) -> "StepTimes":
        """The medians over every step measured while building ``tables``."""
        key = [v for table in tables for v in table.key_ms]
        prop = [v for table in tables for v in table.propagate_ms]
        signal = {name: [v for table in tables for v in table.signal_ms.get(name, [])] for name in SIGNALS}
        if not key or not prop:
            raise ValueError("step times need at least one keyframe step and one propagation step")
        return cls(statistics.median(key), statistics.median(prop),
                   {name: statistics.median(values) for name, values in signal.items() if values})

    def as_json(self) -> dict:
        return {"key_ms": self.key_ms, "propagate_ms": self.propagate_ms, "signal_ms": dict(self.signal_ms)}


@dataclass
class PropagationTable:
    """Everything a schedule's replay needs of one clip (T frames; see the module doc).

    Attributes:
        horizon: the longest propagation run from a keyframe, in frames (the keyframe included).
        preds: ``preds[j]`` uint8 n_j×H×W (CPU), the predictions of frames j .. j+n_j−1 from keyframe j.
        labelled: T bools, the frames that carry a label.
        confusion: T×horizon×C×C int64 (CPU) confusion matrices (rows = label); zero where frame t
            has no label or lies past the clip.
        correct: T×horizon int64, the correctly labelled pixels of each entry (0 where unlabelled).
        signals: per statistic of :data:`model.schedule.SIGNALS`, T×horizon float64 of the
            distortion map of frame t propagated from j (NaN for d = 0 and past the clip).
        key_ms, propagate_ms: wall time of every keyframe / propagation step measured (ms).
        signal_ms: per statistic, the wall time of computing the map and the statistic (ms).
        flows: T−1 forward flows (1×2×H×W, ``estimator(frame_t, frame_t+1)``) for the temporal
            consistency of replayed schedules, or None.
        num_classes, ignore_index: the label space of ``confusion``.
        clip_id: the clip's name.
    """

    horizon: int
    preds: list[Tensor]
    labelled: np.ndarray
    confusion: Tensor
    correct: np.ndarray
    signals: dict[str, np.ndarray]
    num_classes: int
    ignore_index: int
    key_ms: list[float] = field(default_factory=list)
    propagate_ms: list[float] = field(default_factory=list)
    signal_ms: dict[str, list[float]] = field(default_factory=dict)
    flows: list[Tensor] | None = None
    clip_id: str = ""

    @property
    def num_frames(self) -> int:
        return len(self.preds)

    @property
    def size(self) -> tuple[int, int]:
        """The frames' height and width."""
        return int(self.preds[0].shape[-2]), int(self.preds[0].shape[-1])

    def span(self, j: int) -> int:
        """How many frames keyframe j predicts (itself included): min(horizon, T − j)."""
        return min(self.horizon, self.num_frames - j)

    def pred(self, j: int, t: int) -> Tensor:
        """The prediction (H×W uint8) of frame t from keyframe j."""
        if not 0 <= t - j < self.span(j):
            raise IndexError(f"frame {t} is not within the horizon {self.horizon} of keyframe {j} "
                             f"(clip of {self.num_frames} frames)")
        return self.preds[j][t - j]

    @classmethod
    def from_predictions(cls, preds: Sequence[Tensor], labels: Sequence[Tensor | None], horizon: int,
                         num_classes: int, ignore_index: int, signals: dict[str, np.ndarray] | None = None,
                         **extra) -> "PropagationTable":
        """A table from ``preds[j]`` (n_j×H×W class maps of frames j.., n_j = min(horizon, T − j)) and the
        frames' labels (H×W, None where unlabelled): the confusion matrices and correct counts are
        computed here. ``signals`` default to NaN; ``extra``: the other fields."""
        length = len(preds)
        if len(labels) != length:
            raise ValueError(f"{len(labels)} labels for a clip of {length} frames")
        if num_classes > 256:
            raise ValueError(f"predictions are stored as uint8: at most 256 classes, got {num_classes}")
        confusion = torch.zeros(length, horizon, num_classes, num_classes, dtype=torch.int64)
        for j, run in enumerate(preds):
            if run.shape[0] != min(horizon, length - j):
                raise ValueError(f"keyframe {j} predicts {run.shape[0]} frames; expected "
                                 f"min(horizon {horizon}, {length - j})")
            for d in range(run.shape[0]):
                label = labels[j + d]
                if label is not None:
                    cm = ConfusionMatrix(num_classes, ignore_index, device=label.device)
                    confusion[j, d] = cm.update(run[d].to(label.device), label).matrix.cpu()
        correct = confusion.diagonal(dim1=-2, dim2=-1).sum(-1).numpy()
        empty = np.full((length, horizon), np.nan)
        signals = {name: np.asarray(signals[name], dtype=np.float64) if signals and name in signals else empty.copy()
                   for name in SIGNALS}
        return cls(horizon, [p.to("cpu", torch.uint8) for p in preds], np.array([lb is not None for lb in labels]),
                   confusion, correct, signals, num_classes, ignore_index, **extra)


def _timed(fn: Callable[[], object], device: torch.device) -> tuple[object, float]:
    """``fn()`` and its wall time in ms (the device's queued work waited for)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    value = fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return value, 1000.0 * (time.perf_counter() - start)


@torch.no_grad()
def build_table(net: StreamingNet, frames: Tensor, labels: Sequence[Tensor | None], num_classes: int,
                ignore_index: int, horizon: int = 40, wf: float | None = None, progress: bool = True,
                clip_id: str = "") -> PropagationTable:
    """The propagation table of one clip: ``frames`` T×3×H×W on the net's device, ``labels`` one per
    frame (H×W int64, None where unlabelled). Runs T keyframe steps and about T·(horizon − 1)
    propagation steps of ``net.stream(pred_only=True)`` (batch 1) and times each."""
    if horizon < 1:
        raise ValueError(f"horizon must be >= 1, got {horizon}")
    length, device = int(frames.shape[0]), frames.device
    stream = net.stream(wf=wf, pred_only=True)
    signals = {name: np.full((length, horizon), np.nan) for name in SIGNALS}
    key_ms: list[float] = []
    prop_ms: list[float] = []
    signal_ms: dict[str, list[float]] = {name: [] for name in SIGNALS}
    preds = []
    steps = sum(min(horizon, length - j) for j in range(length))
    with tqdm(total=steps, desc=f"table {clip_id}".strip(), unit="step", disable=not progress) as bar:
        for j in range(length):
            out, ms = _timed(lambda: stream.step(frames[j:j + 1], keyframe=True), device)
            key_ms.append(ms)
            run = [out["pred"][0].to("cpu", torch.uint8)]
            for t in range(j + 1, j + min(horizon, length - j)):
                out, ms = _timed(lambda: stream.step(frames[t:t + 1], keyframe=False), device)
                prop_ms.append(ms)
                run.append(out["pred"][0].to("cpu", torch.uint8))
                dm, map_ms = _timed(lambda: net.distortion_q(out, stream.wf), device)
                for name in SIGNALS:
                    signals[name][j, t - j], ms = _timed(lambda: distortion_signal(dm, name), device)
                    signal_ms[name].append(map_ms + ms)
            preds.append(torch.stack(run))
            bar.update(len(run))
    return PropagationTable.from_predictions(preds, labels, horizon, num_classes, ignore_index, signals,
                                             key_ms=key_ms, propagate_ms=prop_ms, signal_ms=signal_ms,
                                             clip_id=clip_id)


def clip_flows(frames: Tensor, estimator: FlowEstimator) -> list[Tensor]:
    """The forward flows ``estimator(frame_t, frame_t+1)`` (1×2×H×W, CPU) of a clip's consecutive frames,
    what the temporal consistency of every replayed schedule warps with."""
    frames = frames.cpu()
    return [estimator(frames[t:t + 1], frames[t + 1:t + 2]).cpu() for t in range(frames.shape[0] - 1)]
