"""The evaluation protocol: accuracy per keyframe distance, plain warping, the keyframe network, and
temporal consistency.

Protocol (the original's and DAVSS's, see ``../shared/reference/ORIGINAL.md`` §7)
-------------------------------------------------------------------------------
An evaluation sample is a window of T consecutive frames (T = 10 by default) whose last frame
``T−1`` is labelled. For a keyframe distance d (1 ≤ d ≤ T−1) the keyframe is frame ``T−1−d``:
CSRNet segments it, its 1/4-resolution logits are warped along the d consecutive FlowNet flows
(chained, no correction in between) and rectified once at the labelled frame (CoNet, coarse and
fine distortion maps, merge). This is exactly ``net.segment_clip(frames[T−1−d:])``; in the same
pass the run also scores

* **d = 0**: the keyframe network alone on the labelled frame (``segment_clip([frames[T−1]])``);
* **plain warping** at each d: the argmax of the warped logits upsampled ×4 (bilinear), without
  rectification, i.e. what the correction buys.

The same protocol serves DAVSS (:class:`model.DAVSS`): what propagates from the keyframe is the
net's ``carry(frame, logits)`` (DAVSS: the logits and the 1/4 keyframe image), warped along the
same chained flows; ``rectify`` is DAVSS's DMNet + CFNet + merge; ``upsample`` its own ×4 resize
(its ``align_corners``). A net without these methods (EVSS) propagates the logits themselves.

One pass per window serves every distance: the flow between frames t−1 and t is the same whatever
the keyframe, so each of the ``max(d)`` flows is computed once, CSRNet runs once per keyframe
position, and only the cheap chained warps and the one rectification per distance are repeated.
Every operation is the one ``segment_clip`` performs on the same tensors (batch 1), so each
prediction equals ``segment_clip``'s exactly.

Accuracy: per distance, an int64 C×C confusion matrix (rows = label, columns = prediction, the
``ignore_index`` pixels skipped) summed over all windows and, under ``torch.distributed``, over
all processes (the data set is split into contiguous shards, no sample repeated); IoU_c =
TP/(TP+FP+FN), mIoU = mean over the classes with a non-empty union (the original's convention).

Temporal consistency (``temporal=True``; definitions in :mod:`engine.metrics`)
------------------------------------------------------------------------------
Two predictors are run over every clip frame by frame: **EVSS streaming** with a keyframe every
``keyframe_interval`` frames (frames 0, k, 2k, … of the clip; the others warped from the last
keyframe and rectified, :class:`model.EVSSStream`'s semantics) and the **per-frame keyframe
network** (CSRNet on every frame). A clip is a window; consecutive windows that overlap by all
but one frame (a densely labelled sequence such as the CamVid val run: the window of frame n+1 is
the window of frame n shifted by one) are chained into one clip, so each frame pair is counted
once. For each pair (t, t+1) the flows ``flow_t→t+1`` and ``flow_t+1→t`` come from the chosen
estimator (the model's FlowNet or OpenCV DIS / Farnebäck); the same flows score both predictors.

* ``tc_etc``: mIoU between P_t and P_t+1 warped back onto frame t (nearest neighbour), no
  occlusion mask, out-of-frame targets excluded (Liu et al. 2020's ETC measure);
* ``tc_fb``: the same over the pixels passing the forward–backward consistency check of Sundaram
  et al. 2010 (|w_f + ŵ_b|² < 0.01(|w_f|² + |ŵ_b|²) + 0.5);
* ``vc`` (VSPW VC_n, n = 8): on frames that carry a label (every frame of a chained dense
  sequence; synthetic windows carry labels on every frame), windows of n consecutive labelled
  frames: share of the positions with constant ground truth where the prediction is constant
  too; positions labelled ``ignore_index`` in the window are left out.
* ``miou``: the streaming predictor's mIoU on the labelled frames it visits.
"""

from __future__ import annotations

import math
import time
from typing import Callable, Dict, Iterable, List, Optional, Sequence

import torch
import torch.distributed as dist
from torch import Tensor

from engine.flow_estimators import make_flow_estimator
from engine.metrics import ConfusionMatrix, TemporalConsistency, VideoConsistency

__all__ = ["DEFAULT_DISTANCES", "ORIGINAL_DISTANCES", "WindowEvaluator", "evaluate_distances",
           "make_flow_estimator", "parse_distances", "shard_indices", "upsample_logits", "carry_state",
           "carried_logits"]

DEFAULT_DISTANCES = tuple(range(1, 10))
#: The distances the original's validation scripts report.
ORIGINAL_DISTANCES = (3, 5, 7, 9)

PredictionHook = Callable[[str, str, Tensor], None]


def upsample_logits(net, logits_q: Tensor) -> Tensor:
    """The net's ×4 upsampling of 1/4-grid logits (``net.upsample`` when it has one, else bilinear
    with align_corners=False, EVSS's)."""
    from model.blocks import upsample4

    return net.upsample(logits_q) if hasattr(net, "upsample") else upsample4(logits_q)


def carry_state(net, frame: Tensor, logits_q: Tensor) -> Tensor:
    """What propagates from a keyframe: ``net.carry(frame, logits)`` (DAVSS) or the logits (EVSS)."""
    return net.carry(frame, logits_q) if hasattr(net, "carry") else logits_q


def carried_logits(net, state: Tensor) -> Tensor:
    """The warped logits inside a propagated state (see :func:`carry_state`)."""
    return net.carried_logits(state) if hasattr(net, "carried_logits") else state


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
        raise ValueError(f"no keyframe distances in {text!r}")
    if min(values) < 0:
        raise ValueError(f"keyframe distances must be >= 0, got {sorted(values)}")
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
    """The model's intermediate results on one window, each computed at most once.

    Args:
        net: an :class:`model.EVSS` or :class:`model.DAVSS` in eval mode.
        frames: T×3×H×W float RGB in [0, 1] (on the net's device), labelled frame last.
        wf: weight of the coarse distortion map (None: ``net.wf``; unused by DAVSS).
    """

    def __init__(self, net, frames: Tensor, wf: Optional[float] = None) -> None:
        if frames.dim() != 4 or frames.shape[1] != 3:
            raise ValueError(f"frames must be T×3×H×W, got {tuple(frames.shape)}")
        self.net = net
        self.frames = frames
        self.wf = getattr(net, "wf", None) if wf is None else float(wf)
        self.size = (int(frames.shape[-2]), int(frames.shape[-1]))
        self._key: Dict[int, Tensor] = {}
        self._flow: Dict[int, Tensor] = {}

    @property
    def length(self) -> int:
        return int(self.frames.shape[0])

    def frame(self, t: int) -> Tensor:
        """Frame t as a 1×3×H×W batch."""
        return self.frames[t:t + 1]

    def key_logits(self, t: int) -> Tensor:
        """CSRNet logits of frame t, 1×C×h×w."""
        if t not in self._key:
            self._key[t] = self.net.keyframe(self.frame(t))
        return self._key[t]

    def flow(self, t: int) -> Tensor:
        """FlowNet flow from frame t back to frame t−1, 1×2×h×w (1/4-grid pixels)."""
        if t < 1:
            raise ValueError("frame 0 of a window has no previous frame")
        if t not in self._flow:
            self._flow[t] = self.net.flow(self.frame(t), self.frame(t - 1))
        return self._flow[t]

    def to_pred(self, logits_full: Tensor) -> Tensor:
        """Full-resolution logits 1×C×4h×4w → class map H×W (int64)."""
        from model.fusion import crop

        return crop(logits_full, self.size).argmax(1)[0]

    def keyframe_pred(self, t: Optional[int] = None) -> Tensor:
        """The keyframe network's prediction on frame t (default: the labelled frame)."""
        t = self.length - 1 if t is None else t
        return self.to_pred(upsample_logits(self.net, self.key_logits(t)))

    def distance(self, d: int, target: Optional[int] = None) -> Dict[str, Tensor]:
        """Prediction at ``target`` (default: the labelled frame) from the keyframe ``target − d``.

        Returns ``pred`` (rectified, as ``segment_clip``) and ``pred_warp`` (plain warping), both
        H×W int64, and ``rectified`` (the net's ``rectify`` outputs: distortion maps, ...); for
        d = 0 both predictions are the keyframe network's and there is no ``rectified``.
        """
        from model.warp import warp

        target = self.length - 1 if target is None else target
        key = target - d
        if d < 0 or key < 0:
            raise ValueError(f"keyframe distance {d} does not fit a window of {self.length} frames "
                             f"(target frame {target}); use a longer window")
        if d == 0:
            pred = self.keyframe_pred(target)
            return {"pred": pred, "pred_warp": pred}
        key_logits = self.key_logits(key)
        features = carry_state(self.net, self.frame(key), key_logits)
        for t in range(key + 1, target + 1):
            features = warp(features, self.flow(t))
        out = self.net.rectify(self.frame(target), features, key_logits.argmax(1, keepdim=True), self.wf)
        pred_warp = self.to_pred(upsample_logits(self.net, carried_logits(self.net, features)))
        return {"pred": self.to_pred(out["logits"]), "pred_warp": pred_warp, "rectified": out}


class _StreamTrack:
    """EVSS streaming with a keyframe every ``interval`` frames, fed from a WindowEvaluator's caches
    (same operations as :meth:`model.EVSSStream.step`)."""

    def __init__(self, net, wf: float, interval: int) -> None:
        self.net, self.wf, self.interval = net, wf, int(interval)
        self.reset()

    def reset(self) -> None:
        self.position = 0
        self.features: Optional[Tensor] = None
        self.key_pred: Optional[Tensor] = None

    def step(self, window: WindowEvaluator, t: int) -> Tensor:
        """Prediction (H×W) on frame t of ``window``, the next frame of the stream."""
        from model.warp import warp

        if self.position % self.interval == 0 or self.features is None:
            logits_q = window.key_logits(t)
            self.features = carry_state(self.net, window.frame(t), logits_q)
            self.key_pred = logits_q.argmax(1, keepdim=True)
            logits = upsample_logits(self.net, logits_q)
        else:
            self.features = warp(self.features, window.flow(t))
            logits = self.net.rectify(window.frame(t), self.features, self.key_pred, self.wf)["logits"]
        self.position += 1
        return window.to_pred(logits)


class _TemporalState:
    """Streams clips through the two predictors and the three temporal measures."""

    def __init__(self, net, num_classes: int, ignore_index: int, wf: float, interval: int,
                 flow_estimator, vc_n: int, fb_check: bool = True) -> None:
        self.estimator = flow_estimator
        self.fb_check = fb_check
        self.names = ("evss", "keyframe")
        self.tc = {n: TemporalConsistency(num_classes, flow_source=flow_estimator.name, fb_check=fb_check)
                   for n in self.names}
        self.vc = {n: VideoConsistency(vc_n, ignore_index=ignore_index) for n in self.names}
        self.cm = {n: ConfusionMatrix(num_classes, ignore_index) for n in self.names}
        self.track = _StreamTrack(net, wf, interval)
        self.prev_frame: Optional[Tensor] = None
        self.prev_pred: Dict[str, Tensor] = {}
        self.labelled_run = False
        self.clips = 0
        self.frames = 0

    def new_clip(self) -> None:
        self.track.reset()
        for n in self.names:
            self.tc[n].new_clip()
            self.vc[n].new_clip()
        self.prev_frame = None
        self.prev_pred = {}
        self.labelled_run = False
        self.clips += 1

    def push(self, window: WindowEvaluator, t: int, label: Optional[Tensor]) -> None:
        preds = {"evss": self.track.step(window, t), "keyframe": window.keyframe_pred(t)}
        frame = window.frame(t)
        if self.prev_frame is not None:
            flow_fwd = self.estimator(self.prev_frame, frame)
            flow_bwd = self.estimator(frame, self.prev_frame) if self.fb_check else None
            for n in self.names:
                self.tc[n].update(self.prev_pred[n], preds[n], flow_fwd, flow_bwd)
        if label is None:
            if self.labelled_run:  # a gap in the labels ends the VC windows
                for n in self.names:
                    self.vc[n].new_clip()
            self.labelled_run = False
        else:
            self.labelled_run = True
            for n in self.names:
                self.vc[n].update(preds[n], label)
                self.cm[n].update(preds[n], label)
        self.prev_frame = frame
        self.prev_pred = preds
        self.frames += 1

    def all_reduce(self) -> None:
        for n in self.names:
            self.tc[n].all_reduce()
            self.vc[n].all_reduce()
            self.cm[n].all_reduce()

    def results(self, interval: int) -> Dict[str, object]:
        out: Dict[str, object] = {
            "flow_source": self.estimator.name,
            "flow_description": self.estimator.description,
            "keyframe_interval": interval,
        }
        for n in self.names:
            tc = self.tc[n].compute()
            vc = self.vc[n].compute()
            out[n] = {
                "tc_etc": tc["tc_etc"], "tc_fb": tc["tc_fb"], "in_frame_fraction": tc["in_frame_fraction"],
                "fb_valid_fraction": tc["fb_valid_fraction"], "num_pairs": tc["num_pairs"],
                "vc": vc["vc"], "vc_correct": vc["vc_correct"], "vc_n": vc["n"], "vc_windows": vc["num_windows"],
                "miou": _none_if_nan(self.cm[n].miou()), "miou_frames_note": "labelled frames visited by the stream",
            }
        tc = self.tc["evss"].compute()
        out["mask_etc"] = tc["mask_etc"]
        out["mask_fb"] = tc["mask_fb"]
        out["vc_definition"] = self.vc["evss"].compute()["definition"]
        return out


def _none_if_nan(v: float) -> Optional[float]:
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


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
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class _Shard(torch.utils.data.Dataset):
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
        temporal: also run the temporal-consistency measures (see the module doc).
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
    state = None
    if temporal:
        state = _TemporalState(net, num_classes, ignore_index, wf, keyframe_interval,
                               make_flow_estimator(flow_source, net), vc_n, fb_check)

    bar = None
    if progress and rank == 0:
        from tqdm import tqdm
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
            window = WindowEvaluator(net, frames, wf)
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
            if state is not None:
                keys = _frame_keys(dataset, index)
                labels = sample.get("labels")
                chained = keys is not None and prev_keys is not None and keys[:-1] == prev_keys[1:]
                if chained:
                    state.push(window, window.length - 1, label)
                else:
                    state.new_clip()
                    for t in range(window.length):
                        if labels is not None:
                            lab_t = labels[t].to(device)
                        else:
                            lab_t = label if t == window.length - 1 else None
                        state.push(window, t, lab_t)
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
    if state is not None:
        state.all_reduce()

    def per_class(cm: ConfusionMatrix) -> List[Optional[float]]:
        return [_none_if_nan(v) for v in cm.iou().tolist()]

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
        results["miou"][key] = _none_if_nan(cm.miou())
        results["pixel_accuracy"][key] = _none_if_nan(cm.pixel_accuracy())
        results["iou_per_class"][key] = per_class(cm)
        results["confusion"][key] = cm.matrix.cpu().tolist()
        if cm_w is not None:
            results["miou_warp"][key] = _none_if_nan(cm_w.miou())
            results["pixel_accuracy_warp"][key] = _none_if_nan(cm_w.pixel_accuracy())
            results["iou_per_class_warp"][key] = per_class(cm_w)
            results["confusion"][f"warp_{key}"] = cm_w.matrix.cpu().tolist()
    valid = [v for v in results["miou"].values() if v is not None]
    results["miou_mean"] = sum(valid) / len(valid) if valid else None
    if state is not None:
        results["temporal"] = state.results(keyframe_interval)
    return results
