"""Stage ``csrnet`` (EVSS stage 1): the keyframe network CSRNet on labelled frames.

The authors' recipe: Adam (0.9, 0.99), lr 4e-4 for the new layers, lr/4 and weight decay/4 for the
ImageNet encoder, weight decay 1e-4, cosine to 1e-6; random scale, mirror and crop; cross-entropy
with the ignore label. ETC's temporal losses on consecutive-frame pairs are options (``etc:``,
:mod:`engine.stages.etc`). Evaluation: mIoU of the labelled frame of each validation window.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from engine import distributed as ddp
from engine.config import PATH, number
from engine.metrics import ConfusionMatrix
from model import CSRNet, load_checkpoint

from .base import Stage, color, encoder_decoder_param_groups, full_res, val_indices
from .data import build_train_set, build_val_set
from .etc import ETC_DEFAULTS, ETC_RULES, ETCObjective


class CSRNetStage(Stage):
    """EVSS stage 1: CSRNet on labelled frames, optionally with ETC's temporal losses."""

    name = "csrnet"
    score_name = "miou"
    defaults = {
        "train": {"epochs": 100, "batch_size": 8},
        "optim": {"lr": 4e-4, "betas": [0.9, 0.99], "weight_decay": 1e-4, "backbone_factor": 0.25,
                  "schedule": "cosine", "schedule_unit": "epoch", "min_lr": 1e-6},
        "data": {"crop": [768, 768], "scale": [0.75, 2.0]},
        "model": {"pretrained_backbone": True, "init": None},
        "etc": ETC_DEFAULTS,
    }
    rules = {"optim.backbone_factor": number(min=0.0), "model.init": PATH, **ETC_RULES}

    def __init__(self, cfg: dict):
        super().__init__(cfg)
        self.etc = ETCObjective(cfg)

    def build_model(self) -> nn.Module:
        m = self.cfg["model"]
        net = CSRNet(self.cfg["data"]["num_classes"], pretrained_backbone=bool(m["pretrained_backbone"]))
        if m["init"]:
            load_checkpoint(net, m["init"])
        return net

    def param_groups(self, model: nn.Module) -> list[dict]:
        return encoder_decoder_param_groups(model, self.cfg["optim"])

    def train_dataset(self) -> Dataset:
        offsets = self.cfg["data"]["offsets"]
        if offsets is None and self.etc.enabled:  # ETC pairs: (labelled frame t, frame t + offset)
            offsets = [int(self.cfg["etc"]["offset"])]
        elif offsets is None:  # only the labelled frame is used; the synthetic set needs a non-zero offset
            offsets = [-1] if self.cfg["data"]["name"] == "synthetic" else [0]
        return build_train_set(self.cfg, offsets)

    def val_dataset(self) -> Dataset | None:
        return build_val_set(self.cfg, length=1)

    def train_step(self, model: nn.Module, batch: dict) -> dict:
        frames, label = batch["frames"][:, -1], batch["label"]
        ignore_index = self.cfg["data"]["ignore_index"]
        if not self.etc.enabled:
            logits = full_res(model(frames), label.shape[-2:])
            return {"loss": F.cross_entropy(logits.float(), label, ignore_index=ignore_index)}
        neighbour = batch["frames"][:, 0]
        logits_q, neighbour_q = model(torch.cat([frames, neighbour])).chunk(2)
        ce = F.cross_entropy(full_res(logits_q, label.shape[-2:]).float(), label, ignore_index=ignore_index)
        out = self.etc.losses(frames, neighbour, logits_q, neighbour_q)
        return {**out, "loss_ce": ce, "loss": ce + out["loss_etc"]}

    def evaluate(self, model: nn.Module, dataset: Dataset, device: torch.device) -> dict:
        d = self.cfg["data"]
        cm = ConfusionMatrix(d["num_classes"], d["ignore_index"], device=device)
        images = {}
        for n, i in enumerate(val_indices(dataset, d["val_limit"])):
            sample = dataset[i]
            frame = sample["frames"][-1:].to(device)
            label = sample["label"].to(device)
            pred = full_res(model(frame), label.shape[-2:]).argmax(1)[0]
            cm.update(pred, label)
            if ddp.is_main() and n < self.cfg["train"]["tb_images"]:
                images[f"{n}_frame"] = frame[0]
                images[f"{n}_pred"] = color(pred, self.cfg)
                images[f"{n}_label"] = color(label, self.cfg)
        cm.all_reduce()
        return {"metrics": {"miou": cm.miou(), "pixel_accuracy": cm.pixel_accuracy()}, "images": images}
