"""Stage ``evss`` (EVSS stage 2): FlowNet and CoNet trained with the model's own loss, CSRNet frozen.

Adam 1e-4, cosine to 1e-6; the keyframe network comes from stage 1 (``model.csrnet``) and FlowNet
may start from stage 1b (``model.flownet``). Evaluation at keyframe distances {1, 5, 9} with plain
warping beside it (:func:`evaluate_at_distances`, shared with stage ``davss``).
"""
from __future__ import annotations

import logging

import torch
from torch import nn
from torch.utils.data import Dataset

from engine import distributed as ddp
from engine.config import PATH, PROBABILITY, WEIGHT, ConfigError, list_of
from engine.evaluate import evaluate_distances
from model import build_evss, load_checkpoint

from .base import DISTANCES, Stage, color
from .data import build_train_set, build_val_set

log = logging.getLogger("evss.train")


def evaluate_at_distances(cfg: dict, model: nn.Module, dataset: Dataset, device: torch.device) -> dict:
    """A stage's evaluation of an EVSS or DAVSS net at the keyframe distances ``eval.distances``.

    Metrics: ``miou_keyframe``, ``miou_d{d}``, ``miou_warp_d{d}`` (plain warping, when
    ``eval.plain_warp``) and ``miou_mean`` (the score; NaN for an empty class union). Images of the
    first window at the largest distance: frame, prediction, label and the distortion map.
    """
    e, d = cfg["eval"], cfg["data"]
    res = evaluate_distances(model, dataset, e["distances"], device=device, num_classes=d["num_classes"],
                             ignore_index=d["ignore_index"], progress=False, plain_warp=e["plain_warp"],
                             limit=d["val_limit"])
    metrics = {"miou_keyframe": res["miou_keyframe"]}
    for k, v in res["miou"].items():
        metrics[f"miou_d{k}"] = v
    for k, v in res.get("miou_warp", {}).items():
        metrics[f"miou_warp_d{k}"] = v
    metrics["miou_mean"] = res["miou_mean"]
    metrics = {k: (float("nan") if v is None else v) for k, v in metrics.items()}
    images = {}
    if ddp.is_main() and cfg["train"]["tb_images"] and len(dataset):
        sample = dataset[0]
        dmax = max(e["distances"])
        frames = sample["frames"].to(device)
        out = model.segment_clip([f[None] for f in frames[-dmax - 1:]])
        size = frames.shape[-2:]
        images["0_frame"] = frames[-1]
        images[f"0_pred_d{dmax}"] = color(out["pred"][0], cfg)
        images["0_label"] = color(sample["label"], cfg)
        distortion = out["dm_fine"] if "dm_fine" in out else out["dm_up"]  # EVSS / DAVSS, full resolution
        images[f"0_distortion_d{dmax}"] = distortion[0, :, :size[0], :size[1]].expand(3, -1, -1)
    return {"metrics": metrics, "images": images}


class EVSSStage(Stage):
    """EVSS stage 2: FlowNet + CoNet on training pairs, the keyframe network frozen."""

    name = "evss"
    score_name = "miou_mean"
    defaults = {
        "train": {"epochs": 100, "batch_size": 8, "eval_every": 5, "find_unused_parameters": True},
        "optim": {"lr": 1e-4, "betas": [0.9, 0.999], "weight_decay": 0.0, "schedule": "cosine",
                  "schedule_unit": "epoch", "min_lr": 1e-6},
        "data": {"crop": [512, 1024], "scale": None},
        "model": {"csrnet": None, "flownet": None, "init": None, "wf": 0.2,
                  "loss_weights": [0.2, 0.5, 0.1, 0.2], "allow_random_csrnet": False},
        "eval": {"distances": [1, 5, 9], "plain_warp": True},
    }
    rules = {
        "model.csrnet": PATH, "model.flownet": PATH, "model.init": PATH,
        "model.wf": PROBABILITY,
        "model.loss_weights": list_of(WEIGHT, length=4),
        "eval.distances": DISTANCES,
    }

    def __init__(self, cfg: dict):
        super().__init__(cfg)
        m = cfg["model"]
        if not (m["csrnet"] or m["init"] or m["allow_random_csrnet"]):
            raise ConfigError("stage evss needs a trained keyframe network: set model.csrnet=PATH (stage-1 "
                              "final.pth or a released CSRNet checkpoint), model.init=PATH (a full EVSS "
                              "checkpoint), or model.allow_random_csrnet=true for tests")

    def build_model(self) -> nn.Module:
        m, d = self.cfg["model"], self.cfg["data"]
        net = build_evss(d["num_classes"], pretrained_backbone=False, wf=m["wf"],
                         loss_weights=tuple(m["loss_weights"]), ignore_index=d["ignore_index"])
        if m["init"]:
            load_checkpoint(net, m["init"])
        if m["csrnet"]:
            load_checkpoint(net.csrnet, m["csrnet"])
        elif not m["init"]:
            log.warning("stage evss: CSRNet has random weights (model.allow_random_csrnet)")
        if m["flownet"]:
            load_checkpoint(net.flownet, m["flownet"])
        net.freeze_keyframe = True
        return net

    def param_groups(self, model: nn.Module) -> list[dict]:
        return [{"params": list(model.flownet.parameters()), "name": "flownet"},
                {"params": list(model.conet.parameters()), "name": "conet"}]

    def train_dataset(self) -> Dataset:
        return build_train_set(self.cfg, self.cfg["data"]["offsets"])

    def val_dataset(self) -> Dataset | None:
        return build_val_set(self.cfg, length=max(self.cfg["eval"]["distances"]) + 1)

    def train_step(self, model: nn.Module, batch: dict) -> dict:
        out = model(batch["frames"], batch["edge"])
        return {k: v for k, v in out.items() if k.startswith("loss")}

    def evaluate(self, model: nn.Module, dataset: Dataset, device: torch.device) -> dict:
        return evaluate_at_distances(self.cfg, model, dataset, device)
