"""Accuracy per keyframe distance on evaluation windows, plain warping and the keyframe network, and
(``temporal=True``) the temporal consistency of streaming: the original EVSS / DAVSS protocol.

:class:`WindowEvaluator` computes a network's keyframe logits and flows on one window at most once and
runs :class:`model.Stream` over them, so every prediction equals ``net.segment_clip``'s;
:func:`evaluate_distances` scores every window of a data set (split over the processes of a distributed
run) and streams its clips through :class:`engine.stream_eval.StreamEvaluator`. The protocol and the
TC, tIoU and VC definitions: docs/evaluation.md.
"""

from __future__ import annotations

import time
from typing import Callable, Dict, Iterable, List, Optional, Sequence

import torch
import torch.distributed as dist
from torch import Tensor
from tqdm import tqdm

from engine.config import ConfigError
from engine.flow_estimators import make_flow_estimator
from engine.metrics import ConfusionMatrix
from engine.metrics.reduction import nan_to_none
from engine.predictors import KeyframeStream
from engine.stream_eval import StreamEvaluator, clip_labels
from model.fusion import crop
from model.stream import Stream, StreamingNet

__all__ = ["DEFAULT_DISTANCES", "ORIGINAL_DISTANCES", "WindowEvaluator", "evaluate_distances",
           "parse_distances", "shard_indices"]

DEFAULT_DISTANCES = tuple(range(1, 10))
#: The distances the original's validation scripts report.
ORIGINAL_DISTANCES = (3, 5, 7, 9)

PredictionHook = Callable[[str, str, Tensor], None]


def parse_distances(text: str | Iterable[int]) -> List[int]:
    """``"1,3"`` / ``"1-9"`` / ``"original"`` (3,5,7,9) / an iterable of ints → sorted unique list."""
    if not isinstance(text, str):
        values = [int(v) for v in text]
    elif text.strip().lower() == "original":
        values = list(ORIGINAL_DISTANCES)
    else:
        values = []
        for part in text.replace(" ", "").split(","):
            if not part:
                continue
            if "-" in part[1:]:
                lo, hi = part.split("-", 1)
                values.extend(range(int(lo), int(hi) + 1))
            else:
                values.append(int(part))
    if not values:
        raise ConfigError(f"no keyframe distances in {text!r}")
    if min(values) < 0:
        raise ConfigError(f"keyframe distances must be >= 0, got {sorted(values)}")
    return sorted(set(values))


def shard_indices(num: int, rank: int, world: int) -> range:
    """Contiguous shard ``rank`` of ``range(num)`` among ``world`` processes (no repetition; the
    shards cover every index once, sizes differ by at most one)."""
    lo = (num * rank) // world
    hi = (num * (rank + 1)) // world
    return range(lo, hi)


# --------------------------------------------------------------------------------------------
# one window
# --------------------------------------------------------------------------------------------
class WindowEvaluator:
    """A network's stages on the frames of one window, the keyframe logits and flows each computed once.

    It stands in for the net in :class:`model.Stream` (and in the predictors built on it): it has the
    :class:`model.StreamingNet` stages; :meth:`keyframe` and :meth:`flow` on the window's frames
    (:meth:`frame`) come from the caches, the other stages are the net's (full-resolution streams only:
    ``pred_only`` streams are not served). The previous frame of a flow is recognised by value too,
    so a stream continued from the previous window (shifted by one frame) still finds its flow.

    Args:
        net: an :class:`model.EVSS` or :class:`model.DAVSS` (any :class:`model.StreamingNet` whose
            ``prepare`` returns the frame as it is) in eval mode.
        frames: T×3×H×W float RGB in [0, 1] (on the net's device), labelled frame last; or None, and
            the window is given later by :meth:`load`.
        wf: weight of the coarse distortion map (None: ``net.wf``; unused by DAVSS).
    """

    def __init__(self, net: StreamingNet, frames: Optional[Tensor] = None, wf: Optional[float] = None) -> None:
        self.net = net
        self.wf = getattr(net, "wf", None) if wf is None else float(wf)
        self._views: List[Tensor] = []
        if frames is not None:
            self.load(frames)

    def load(self, frames: Tensor) -> None:
        """Move on to the window ``frames`` (T×3×H×W); the caches of the previous one are dropped."""
        if frames.dim() != 4 or frames.shape[1] != 3:
            raise ValueError(f"frames must be T×3×H×W, got {tuple(frames.shape)}")
        self.frames = frames
        self.size = (int(frames.shape[-2]), int(frames.shape[-1]))
        self._views = list(frames.split(1))
        self._index = {id(view): t for t, view in enumerate(self._views)}
        self._key: Dict[int, Tensor] = {}
        self._flow: Dict[int, Tensor] = {}

    @property
    def length(self) -> int:
        return len(self._views)

    def frame(self, t: int) -> Tensor:
        """Frame t as a 1×3×H×W batch (the same tensor at every call: the caches know it)."""
        return self._views[t]

    # ---------------------------------------------------------------- the net's stages, cached
    def keyframe(self, frame: Tensor) -> Tensor:
        """Keyframe-network logits 1×C×h×w of ``frame`` (cached for the window's frames)."""
        t = self._index.get(id(frame))
        if t is None:
            return self.net.keyframe(frame)
        if t not in self._key:
            self._key[t] = self.net.keyframe(frame)
        return self._key[t]

    def flow(self, current: Tensor, previous: Tensor) -> Tensor:
        """Flow 1×2×h×w from ``current`` back to ``previous`` (cached when ``current`` is frame t of the
        window and ``previous`` is, or equals, frame t−1)."""
        t = self._index.get(id(current))
        if t is None or t < 1 or not (previous is self._views[t - 1] or torch.equal(previous, self._views[t - 1])):
            return self.net.flow(current, previous)
        if t not in self._flow:
            self._flow[t] = self.net.flow(current, self._views[t - 1])
        return self._flow[t]

    # ---------------------------------------------------------------- the net's other stages
    def carry(self, frame: Tensor, logits_q: Tensor) -> Tensor:
        return self.net.carry(frame, logits_q)

    def carried_logits(self, carried: Tensor) -> Tensor:
        return self.net.carried_logits(carried)

    def keyframe_classes(self, logits_q: Tensor) -> Optional[Tensor]:
        return self.net.keyframe_classes(logits_q)

    def rectify(self, frame: Tensor, carried: Tensor, key_classes: Optional[Tensor], wf: Optional[float] = None) -> dict:
        return self.net.rectify(frame, carried, key_classes, wf)

    def upsample(self, logits_q: Tensor) -> Tensor:
        return self.net.upsample(logits_q)

    def keyframe_outputs(self, frame: Tensor, logits_q: Tensor, carried: Tensor) -> dict:
        return self.net.keyframe_outputs(frame, logits_q, carried)

    def prepare(self, frame: Tensor) -> Tensor:
        return self.net.prepare(frame)

    # ---------------------------------------------------------------- the protocol's predictions
    def key_logits(self, t: int) -> Tensor:
        """Keyframe-network logits of frame t, 1×C×h×w."""
        return self.keyframe(self.frame(t))

    def to_pred(self, logits_full: Tensor) -> Tensor:
        """Full-resolution logits 1×C×4h×4w → class map H×W (int64)."""
        return crop(logits_full, self.size).argmax(1)[0]

    def keyframe_pred(self, t: Optional[int] = None) -> Tensor:
        """The keyframe network's prediction on frame t (default: the labelled frame), H×W int64."""
        t = self.length - 1 if t is None else t
        return self.to_pred(self.net.upsample(self.key_logits(t)))

    def distance(self, d: int, target: Optional[int] = None) -> Dict[str, Tensor]:
        """Prediction at ``target`` (default: the labelled frame) from the keyframe ``target − d``.

        Returns ``pred`` (rectified, as ``segment_clip``) and ``pred_warp`` (plain warping), both
        H×W int64, and ``rectified`` (the stream's step at the target: the net's ``rectify`` outputs,
        distortion maps, ...); for d = 0 both predictions are the keyframe network's and there is no
        ``rectified``.
        """
        target = self.length - 1 if target is None else target
        key = target - d
        if d < 0 or key < 0:
            raise ValueError(f"keyframe distance {d} does not fit a window of {self.length} frames "
                             f"(target frame {target}); use a longer window")
        if d == 0:
            pred = self.keyframe_pred(target)
            return {"pred": pred, "pred_warp": pred}
        stream = Stream(self, self.wf)
        stream.step(self.frame(key), keyframe=True)
        for t in range(key + 1, target):
            stream.propagate(self.frame(t))
        out = stream.step(self.frame(target))
        pred_warp = self.to_pred(self.net.upsample(out["warped"]))
        return {"pred": out["pred"][0], "pred_warp": pred_warp, "rectified": out}


def _frame_keys(dataset, index: int) -> Optional[tuple]:
    """Paths of the frames of window ``index`` when the data set exposes them (chains windows)."""
    items = getattr(dataset, "items", None)
    if items is None:
        return None
    try:
        frames = items[index].frames
    except (AttributeError, IndexError, TypeError):
        return None
    return tuple(str(f) for f in frames)


def _dist_info() -> tuple[int, int]:
    """(rank, world size) of this process; (0, 1) outside a distributed run."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class _Shard(torch.utils.data.Dataset):
    """The samples ``indices`` of ``dataset`` as ``(index, sample)`` pairs."""

    def __init__(self, dataset, indices: Sequence[int]) -> None:
        self.dataset, self.indices = dataset, list(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        return self.indices[i], self.dataset[self.indices[i]]


# --------------------------------------------------------------------------------------------
# the whole data set
# --------------------------------------------------------------------------------------------
@torch.no_grad()
def evaluate_distances(net, dataset, distances: Sequence[int] = DEFAULT_DISTANCES,
                       device: str | torch.device = "cpu", num_classes: Optional[int] = None,
                       ignore_index: Optional[int] = None, wf: Optional[float] = None,
                       progress: bool = True, *, plain_warp: bool = True, temporal: bool = False,
                       flow_source: str = "dis", keyframe_interval: int = 5, vc_n: int = 8,
                       fb_check: bool = True, limit: Optional[int] = None, num_workers: int = 0,
                       on_prediction: Optional[PredictionHook] = None,
                       class_names: Optional[Sequence[str]] = None) -> Dict[str, object]:
    """Evaluate ``net`` on every window of ``dataset`` at every keyframe distance.

    Args:
        net: :class:`model.EVSS` or :class:`model.DAVSS` (put in eval mode here; its train/eval mode
            is restored after).
        dataset: evaluation windows (dicts with ``frames`` T×3×H×W float [0, 1], the labelled frame
            last, ``label`` H×W int64, ``id``; optional ``labels`` T×H×W labelling every frame).
        distances: keyframe distances d (1 ≤ d ≤ T−1; 0 is the keyframe network, always reported).
        device: where the model runs.
        num_classes, ignore_index: label space (default: the data set's ``num_classes`` /
            ``ignore_index``).
        wf: coarse distortion-map weight (None: ``net.wf``).
        progress: tqdm bar on rank 0.
        plain_warp: also score plain warping without rectification.
        temporal: also stream the clips (consecutive windows chained into one clip) through EVSS
            streaming (``"evss"``, a keyframe every ``keyframe_interval`` frames) and the keyframe
            network on every frame (``"keyframe"``) for TC, tIoU and VC (docs/evaluation.md).
        flow_source: ``"model"``, ``"dis"`` or ``"farneback"`` (temporal measures only).
        keyframe_interval: keyframe interval k of the streaming predictor (temporal only).
        vc_n: window length of VC_n.
        fb_check: also the forward-backward masked temporal IoU.
        limit: evaluate only the first ``limit`` windows (before sharding).
        num_workers: DataLoader worker processes.
        on_prediction: ``hook(sample_id, key, pred)`` for every prediction on a labelled frame, key
            ``"d<d>"``, ``"warp_d<d>"`` or ``"keyframe"``; pred H×W int64 (on ``device``).
        class_names: names reported beside per-class IoUs.

    Returns:
        A JSON-ready dict: ``miou`` / ``miou_warp`` / ``pixel_accuracy`` / ``iou_per_class`` /
        ``iou_per_class_warp`` keyed by ``str(d)``, ``miou_keyframe``, ``iou_per_class_keyframe``,
        ``miou_mean`` (mean of the per-distance mIoUs), ``confusion`` (int matrices), ``num_samples``,
        ``distances``, ``class_names``, ``seconds``, and ``temporal`` when asked. An empty class's
        IoU is None; mIoUs are fractions in [0, 1].
    """
    distances = parse_distances(distances)
    num_classes = int(num_classes if num_classes is not None else dataset.num_classes)
    ignore_index = int(ignore_index if ignore_index is not None else getattr(dataset, "ignore_index", 255))
    device = torch.device(device)
    wf = getattr(net, "wf", None) if wf is None else float(wf)
    if keyframe_interval < 1:
        raise ValueError(f"keyframe_interval must be >= 1, got {keyframe_interval}")
    was_training = net.training
    net.eval()

    rank, world = _dist_info()
    total = len(dataset) if limit is None else min(int(limit), len(dataset))
    indices = shard_indices(total, rank, world)
    loader = torch.utils.data.DataLoader(_Shard(dataset, indices), batch_size=None, shuffle=False,
                                         num_workers=num_workers)

    positive = [d for d in distances if d > 0]
    cms = {d: ConfusionMatrix(num_classes, ignore_index, device=device) for d in positive}
    cms_warp = {d: ConfusionMatrix(num_classes, ignore_index, device=device) for d in positive}
    cm_key = ConfusionMatrix(num_classes, ignore_index, device=device)
    window = WindowEvaluator(net, wf=wf)
    streams = None
    if temporal:  # the streams read the window's caches: no keyframe logits or flow computed twice
        predictors = {"evss": KeyframeStream(window, keyframe_interval, wf), "keyframe": KeyframeStream(window, 1, wf)}
        streams = StreamEvaluator(predictors, num_classes, ignore_index, make_flow_estimator(flow_source, net),
                                  fb_check, vc_n, device)

    bar = None
    if progress and rank == 0:
        bar = tqdm(total=len(indices), desc=f"eval d={','.join(map(str, distances))}", unit="window",
                   dynamic_ncols=True)
    start = time.perf_counter()
    count = 0
    prev_keys: Optional[tuple] = None
    try:
        for index, sample in loader:
            frames = sample["frames"].to(device, non_blocking=True)
            label = sample["label"].to(device)
            sample_id = str(sample.get("id", index))
            window.load(frames)
            if positive and max(positive) > window.length - 1:
                raise ValueError(f"keyframe distance {max(positive)} needs windows of at least "
                                 f"{max(positive) + 1} frames; sample {sample_id!r} has {window.length}")
            for d in positive:
                out = window.distance(d)
                cms[d].update(out["pred"], label)
                if plain_warp:
                    cms_warp[d].update(out["pred_warp"], label)
                if on_prediction is not None:
                    on_prediction(sample_id, f"d{d}", out["pred"])
                    if plain_warp:
                        on_prediction(sample_id, f"warp_d{d}", out["pred_warp"])
            key_pred = window.keyframe_pred()
            cm_key.update(key_pred, label)
            if on_prediction is not None:
                on_prediction(sample_id, "keyframe", key_pred)
            if streams is not None:
                keys = _frame_keys(dataset, index)
                if keys is not None and prev_keys is not None and keys[:-1] == prev_keys[1:]:
                    streams.push(window.frame(window.length - 1), label)  # the clip goes on by one frame
                else:
                    streams.new_clip()
                    for t, label_t in enumerate(clip_labels(sample, device)):
                        streams.push(window.frame(t), label_t)
                prev_keys = keys
            count += 1
            if bar is not None:
                bar.update(1)
                bar.set_postfix(d_max=f"{cms[max(positive)].miou():.3f}" if positive else "",
                                key=f"{cm_key.miou():.3f}")
    finally:
        if bar is not None:
            bar.close()
        net.train(was_training)
    seconds = time.perf_counter() - start

    for cm in (*cms.values(), *cms_warp.values(), cm_key):
        cm.all_reduce()
    num = torch.tensor([count], dtype=torch.int64, device=device)
    if world > 1:
        dist.all_reduce(num)
    if streams is not None:
        streams.all_reduce()

    def per_class(cm: ConfusionMatrix) -> List[Optional[float]]:
        return [nan_to_none(v) for v in cm.iou().tolist()]

    key_summary = cm_key.summary()
    results: Dict[str, object] = {
        "distances": distances,
        "num_samples": int(num.item()),
        "num_classes": num_classes,
        "ignore_index": ignore_index,
        "class_names": list(class_names) if class_names is not None else None,
        "wf": wf,
        "miou": {}, "miou_warp": {}, "pixel_accuracy": {}, "pixel_accuracy_warp": {},
        "iou_per_class": {}, "iou_per_class_warp": {},
        "miou_keyframe": key_summary["miou"],
        "pixel_accuracy_keyframe": key_summary["pixel_accuracy"],
        "iou_per_class_keyframe": per_class(cm_key),
        "confusion": {"keyframe": cm_key.matrix.cpu().tolist()},
        "seconds": seconds,
        "seconds_per_window": seconds / count if count else None,
        "world_size": world,
    }
    for d in distances:
        key = str(d)
        cm = cms.get(d, cm_key)
        cm_w = cms_warp.get(d, cm_key) if plain_warp else None
        results["miou"][key] = nan_to_none(cm.miou())
        results["pixel_accuracy"][key] = nan_to_none(cm.pixel_accuracy())
        results["iou_per_class"][key] = per_class(cm)
        results["confusion"][key] = cm.matrix.cpu().tolist()
        if cm_w is not None:
            results["miou_warp"][key] = nan_to_none(cm_w.miou())
            results["pixel_accuracy_warp"][key] = nan_to_none(cm_w.pixel_accuracy())
            results["iou_per_class_warp"][key] = per_class(cm_w)
            results["confusion"][f"warp_{key}"] = cm_w.matrix.cpu().tolist()
    valid = [v for v in results["miou"].values() if v is not None]
    results["miou_mean"] = sum(valid) / len(valid) if valid else None
    if streams is not None:
        results["temporal"] = _temporal_results(streams, keyframe_interval)
    return results


def _temporal_results(streams: StreamEvaluator, interval: int) -> Dict[str, object]:
    """The ``temporal`` part of :func:`evaluate_distances`'s results."""
    info = streams.description()
    out: Dict[str, object] = {"flow_source": info["flow_source"], "flow_description": info["flow_description"],
                              "keyframe_interval": interval}
    for name, r in streams.results().items():
        out[name] = {k: r[k] for k in ("tc_etc", "tc_fb", "in_frame_fraction", "fb_valid_fraction", "num_pairs",
                                       "vc", "vc_correct", "vc_n", "vc_windows", "miou")}
        out[name]["miou_frames_note"] = "labelled frames visited by the stream"
    out.update(mask_etc=info["mask_etc"], mask_fb=info["mask_fb"], vc_definition=info["vc_definition"])
    return out
