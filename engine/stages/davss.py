"""DAVSS's two stages as its original release (Zhuang et al., TCSVT 2020): ``davss_dmnet``, then ``davss``.

davss_dmnet  DMNet alone (keyframe network and FlowNet frozen, in eval mode): BCE of the distortion
             map against the mismatch between the warped prediction and the keyframe network's own
             prediction, two chained steps per sample; Adam 1e-4, ×0.1 after half of the iterations.
             Evaluation: per distance, the L1 between map and mismatch (the original's measure) and
             precision/recall/IoU of the map thresholded at 0.5; best = lowest mean L1.
davss        the correction stage (keyframe network and DMNet frozen; FlowNet and CFNet trained):
             loss_semantic (warped and merged logits, step 2 against img_2's pseudo-label, step 3
             against the ground truth) + loss_cfnet (per-pixel CFNet loss weighted by the map;
             ``model.cfnet_loss_broadcast=true`` for the original's N×N broadcast); Adam 1e-4, ×0.1
             after half; evaluation at d = 1, 5, 9 as EVSS's stage 2 (best = their mean mIoU).

Samples: every labelled frame t gives [t − j, t − k, t] for j = 2 … ``data.max_distance`` with k
drawn once in 1 … j − 1 (:func:`engine.stages.data.build_triplet_set`).

Weights (``model.*``): ``init`` a whole DAVSS checkpoint (released scnet/scnet_ddp or this project's);
``pretrained`` the original's deeplab + flownet file; ``keyframe_checkpoint`` the keyframe network
alone (DeepLab part, or a stage-1 CSRNet with ``model.keyframe=csrnet``); ``flownet`` a FlowNet (a
stage-1b run, or the FlowNet part of an EVSS/DAVSS checkpoint); ``dmnet`` the DMNet (a released DMNet
file or the final.pth of a ``davss_dmnet`` run). Later entries override earlier ones.
``model.dmnet_bn_momentum`` sets every DMNet BatchNorm's momentum: the original's 0.0003 inside the
separable units needs ~10^4 updates before the running statistics (used at evaluation) are those of
the data; short runs need a larger one (on the synthetic demo, after 150 iterations at 0.0003 the
evaluation-mode map was 0 everywhere).
"""
from __future__ import annotations

import logging

import torch
from torch import nn
from torch.utils.data import Dataset

from engine.config import PATH, POSITIVE_INT, PROBABILITY, ConfigError, number, one_of
from engine.distortion import evaluate_distortion
from model import build_davss, load_checkpoint
from model.checkpoint import read_state_dict

from .base import DISTANCES, Stage, val_indices
from .data import build_triplet_set, build_val_set
from .evss import evaluate_at_distances

log = logging.getLogger("evss.train")

DAVSS_MODEL_DEFAULTS = {
    "keyframe": "deeplabv3plus",     # deeplabv3plus (as released) | csrnet (this project's)
    "align_corners": True,           # the original trains (and validates) with align_corners=True
    "init": None,
    "pretrained": None,
    "keyframe_checkpoint": None,
    "flownet": None,
    "dmnet": None,
    "cfnet_loss_broadcast": False,
    "dmnet_bn_momentum": None,       # None: the original's (0.0003 inside the separable units, 0.1 outside)
    "allow_random_keyframe": False,
}
DAVSS_MODEL_RULES = {
    "model.keyframe": one_of("deeplabv3plus", "csrnet"),
    **{f"model.{key}": PATH for key in ("init", "pretrained", "keyframe_checkpoint", "flownet", "dmnet")},
    "model.dmnet_bn_momentum": number(min=0.0, max=1.0, null=True),
    "data.max_distance": POSITIVE_INT,
    "eval.distances": DISTANCES,
}


def _load_part(module: nn.Module, path: str, part: str) -> None:
    """Load ``path`` into ``module``: the ``part.*`` entries of a whole-net file, else the file itself."""
    state = read_state_dict(path)
    prefixed = {k[len(part) + 1:]: v for k, v in state.items() if k.startswith(part + ".")}
    load_checkpoint(module, prefixed or state)


def build_davss_net(cfg: dict) -> nn.Module:
    """The DAVSS net of a config, weights loaded as ``model.*`` says (see the module doc)."""
    m, d = cfg["model"], cfg["data"]
    net = build_davss(d["num_classes"], align_corners=bool(m["align_corners"]), keyframe=m["keyframe"],
                      ignore_index=d["ignore_index"], cfnet_loss_broadcast=bool(m["cfnet_loss_broadcast"]))
    for key in ("init", "pretrained"):
        if m[key]:
            log.info("DAVSS: %s <- %s (%s)", key, m[key], load_checkpoint(net, m[key]) or "whole net")
    keyframe_part = "deeplab" if m["keyframe"] == "deeplabv3plus" else "csrnet"
    for key, module, part in (("keyframe_checkpoint", net.keyframe_net, keyframe_part),
                              ("flownet", net.flownet, "flownet"), ("dmnet", net.dmnet, "dmnet")):
        if m[key]:
            _load_part(module, m[key], part)
            log.info("DAVSS: %s <- %s", part, m[key])
    if m["dmnet_bn_momentum"] is not None:
        for layer in net.dmnet.modules():
            if isinstance(layer, nn.BatchNorm2d):
                layer.momentum = float(m["dmnet_bn_momentum"])
    return net


def _check_keyframe(cfg: dict, stage: str) -> None:
    m = cfg["model"]
    if not (m["init"] or m["pretrained"] or m["keyframe_checkpoint"] or m["allow_random_keyframe"]):
        raise ConfigError(f"stage {stage} needs a trained keyframe network: set model.keyframe_checkpoint=PATH "
                          "(with model.keyframe=csrnet for a stage-1 CSRNet), model.pretrained=PATH (the original's "
                          "deeplab + flownet file), model.init=PATH (a whole DAVSS checkpoint), or "
                          "model.allow_random_keyframe=true for tests")


class DAVSSDMNetStage(Stage):
    """DAVSS stage 1: the distortion-map network DMNet alone, the rest frozen."""

    name = "davss_dmnet"
    score_name = "score"
    defaults = {
        "train": {"epochs": 100, "batch_size": 12, "eval_every": 5, "eval_first": False},
        "optim": {"lr": 1e-4, "betas": [0.9, 0.999], "weight_decay": 0.0, "schedule": "step",
                  "schedule_unit": "iter"},
        "data": {"crop": None, "scale": None, "flip": 0.0, "max_distance": 10},
        "model": dict(DAVSS_MODEL_DEFAULTS),
        "eval": {"distances": [1, 5, 9], "threshold": 0.5},
    }
    rules = {**DAVSS_MODEL_RULES, "eval.threshold": PROBABILITY}

    def __init__(self, cfg: dict):
        super().__init__(cfg)
        _check_keyframe(cfg, self.name)

    def build_model(self) -> nn.Module:
        net = build_davss_net(self.cfg)
        net.stage = "dmnet"
        return net

    def param_groups(self, model: nn.Module) -> list[dict]:
        return [{"params": list(model.dmnet.parameters()), "name": "dmnet"}]

    def train_dataset(self) -> Dataset:
        return build_triplet_set(self.cfg)

    def val_dataset(self) -> Dataset | None:
        return build_val_set(self.cfg, length=max(self.cfg["eval"]["distances"]) + 1)

    def train_step(self, model: nn.Module, batch: dict) -> dict:
        return {"loss": model(batch["frames"])["loss"]}

    def evaluate(self, model: nn.Module, dataset: Dataset, device: torch.device) -> dict:
        e = self.cfg["eval"]
        indices = val_indices(dataset, self.cfg["data"]["val_limit"])
        res = evaluate_distortion({"davss": model}, dataset, e["distances"], device, indices=indices,
                                  threshold=float(e["threshold"]), progress=False)["davss"]
        metrics = {}
        for d, r in res.items():
            metrics.update({f"l1_d{d}": r["l1"], f"iou_d{d}": r["iou"], f"precision_d{d}": r["precision"],
                            f"recall_d{d}": r["recall"], f"ap_d{d}": r["ap"]})
        metrics["score"] = -sum(r["l1"] for r in res.values()) / len(res)
        return {"metrics": {k: float("nan") if v is None else v for k, v in metrics.items()}, "images": {}}


class DAVSSStage(Stage):
    """DAVSS stage 2: the correction (FlowNet + CFNet) with the keyframe network and DMNet frozen."""

    name = "davss"
    score_name = "miou_mean"
    defaults = {
        "train": {"epochs": 100, "batch_size": 4, "eval_every": 5, "eval_first": False,
                  "find_unused_parameters": True},
        "optim": {"lr": 1e-4, "betas": [0.9, 0.999], "weight_decay": 0.0, "schedule": "step",
                  "schedule_unit": "iter"},
        "data": {"crop": [512, 1024], "scale": None, "flip": 0.0, "max_distance": 10},
        "model": dict(DAVSS_MODEL_DEFAULTS),
        "eval": {"distances": [1, 5, 9], "plain_warp": True},
    }
    rules = DAVSS_MODEL_RULES

    def __init__(self, cfg: dict):
        super().__init__(cfg)
        _check_keyframe(cfg, self.name)

    def build_model(self) -> nn.Module:
        net = build_davss_net(self.cfg)
        net.stage = "correction"
        return net

    def param_groups(self, model: nn.Module) -> list[dict]:
        return [{"params": list(model.flownet.parameters()), "name": "flownet"},
                {"params": list(model.cfnet.parameters()), "name": "cfnet"}]

    def train_dataset(self) -> Dataset:
        return build_triplet_set(self.cfg)

    def val_dataset(self) -> Dataset | None:
        return build_val_set(self.cfg, length=max(self.cfg["eval"]["distances"]) + 1)

    def train_step(self, model: nn.Module, batch: dict) -> dict:
        out = model(batch["frames"], batch["label"])
        return {k: v for k, v in out.items() if k.startswith("loss")}

    def evaluate(self, model: nn.Module, dataset: Dataset, device: torch.device) -> dict:
        return evaluate_at_distances(self.cfg, model, dataset, device)
