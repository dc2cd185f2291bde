"""What a variant changes in the outputs: the largest differences of two variants on one step each,
and the fast mode's mIoU change on the synthetic validation windows."""
from __future__ import annotations

import os

import torch
from torch import Tensor

from dataset import build_dataset
from engine.metrics import ConfusionMatrix
from model.fusion import crop

from .stages import EVSSRunner
from .variants import BenchmarkError, load_evss

__all__ = ["output_difference", "fast_accuracy"]


def _max_abs_diff(x: Tensor, y: Tensor) -> float:
    return (x.float() - y.float()).abs().max().item()


def output_difference(a: EVSSRunner, b: EVSSRunner, frames: list[Tensor]) -> dict:
    """Largest differences of two EVSS variants' outputs on a keyframe step (``frames[0]``) and the
    non-keyframe step that follows (``frames[1]``): key logits, predictions (disagreeing pixels in %),
    flow, warped logits, CoNet's update and edge, merged logits where both have them, and the
    disagreeing pixels outside near-ties (top-2 margin ≤ 1e-4) of a reference's merged logits."""
    outs = []
    for runner in (a, b):
        runner.stream.reset()
        key = runner.stream.step(frames[0], keyframe=True)
        outs.append((key, runner.stream.step(frames[1])))
    (ka, na), (kb, nb) = outs
    res = {
        "key_logits_max_abs_diff": _max_abs_diff(ka["key_logits"], kb["key_logits"]),
        "key_logits_max_abs": ka["key_logits"].float().abs().max().item(),
        "key_pred_disagree_pct": 100 * (ka["pred"] != kb["pred"]).float().mean().item(),
        "nonkey_pred_disagree_pct": 100 * (na["pred"] != nb["pred"]).float().mean().item(),
    }
    for name in ("flow", "warped", "update", "edge"):
        res[f"{name}_max_abs_diff"] = _max_abs_diff(na[name], nb[name])
    if "logits" in na and "logits" in nb:
        res["nonkey_logits_max_abs_diff"] = _max_abs_diff(na["logits"], nb["logits"])
    for ref, other in ((na, nb), (nb, na)):
        if "logits" in ref:
            top2 = crop(ref["logits"], tuple(frames[1].shape[-2:])).topk(2, dim=1).values
            decided = (top2[:, 0] - top2[:, 1]) > 1e-4
            res["nonkey_pred_disagree_margin_gt_1e-4"] = int(((ref["pred"] != other["pred"]) & decided).sum())
            break
    return res


def fast_accuracy(checkpoint: str, fast_variant: str, dataset_kwargs: dict, max_windows: int, distance: int,
                  num_classes: int, device: torch.device) -> dict:
    """mIoU of ``exact`` and ``fast_variant`` on the synthetic validation windows, each predicting a
    window's labelled last frame from the keyframe ``distance`` frames before it, for a trained EVSS
    ``checkpoint`` (random or reference-generator weights segment nothing).

    ``dataset_kwargs`` are ``SyntheticVideoDataset`` arguments. Returns ``miou_exact``,
    ``miou_<fast_variant>`` (in %), ``miou_change_points`` (fast − exact) and
    ``agreement_miou_fast_vs_exact`` (the fast predictions scored against the exact ones).
    """
    if not os.path.isfile(checkpoint):
        raise BenchmarkError(f"--fast-accuracy needs a trained EVSS checkpoint: --weights {checkpoint!r} is not a "
                             "file (e.g. runs/demo/evss/final.pth from bash run/demo.sh)")
    net = load_evss(num_classes, checkpoint, device)
    runners = {name: EVSSRunner(name, net) for name in ("exact", fast_variant)}
    try:
        ds = build_dataset("synthetic", split="val", mode="eval", **dataset_kwargs)
    except (TypeError, ValueError) as exc:
        raise BenchmarkError(f"synthetic val set unavailable: {exc}") from exc
    cms = {name: ConfusionMatrix(num_classes) for name in runners}
    agree = ConfusionMatrix(num_classes)
    n = min(len(ds), max_windows)
    for i in range(n):
        sample = ds[i]
        frames, label = sample["frames"].to(device), sample["label"].to(device).long()
        clip = [frames[j:j + 1] for j in range(frames.shape[0] - 1 - distance, frames.shape[0])]
        preds = {name: r.model.predict_clip(clip) for name, r in runners.items()}
        for name, p in preds.items():
            cms[name].update(p[0], label.view(p[0].shape))
        agree.update(preds[fast_variant][0], preds["exact"][0])
    res = {"source": "synthetic val", "windows": n, "distance": distance, "weights": checkpoint}
    for name, cm in cms.items():
        res[f"miou_{name}"] = 100 * float(cm.miou())
    res["miou_change_points"] = res[f"miou_{fast_variant}"] - res["miou_exact"]
    res["agreement_miou_fast_vs_exact"] = 100 * float(agree.miou())
    return res
