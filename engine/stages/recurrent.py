"""Stage ``recurrent``: the recurrent baseline, CSRNet + ConvLSTM/ConvGRU on windows of frames.

:class:`model.recurrent.RecurrentCSRNet` (ConvLSTM or ConvGRU between CSRNet's encoder and decoder)
initialised from a stage-1 CSRNet checkpoint (``model.csrnet``) and trained on windows of
``recurrent.window`` consecutive frames with truncated back-propagation through time (each window
starts from a zero state and back-propagates through all of its steps). Cross-entropy on the
labelled frames of the window (every frame on the synthetic set, the last one on Cityscapes/CamVid),
plus the thesis's consistency losses between consecutive predictions as options:
``change_weight``, ``smoothing_weight``, ``warping_weight`` (flow from ``recurrent.flow``).
Evaluation streams each validation window from a zero state and scores its labelled frame.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from engine.config import PATH, POSITIVE_INT, WEIGHT, ConfigError, integer, list_of, number, one_of
from engine.flow_estimators import FlowEstimator, make_flow_estimator
from engine.metrics import ConfusionMatrix
from model import build_recurrent, load_checkpoint
from model.temporal_losses import change_loss, flow_warping_loss, smoothing_loss

from .base import Stage, color, encoder_decoder_param_groups, full_res, val_indices
from .data import build_val_set, build_window_set


class RecurrentStage(Stage):
    """The recurrent baseline: CSRNet + ConvLSTM/ConvGRU on windows of frames, truncated BPTT."""

    name = "recurrent"
    score_name = "miou"
    defaults = {
        "train": {"epochs": 50, "batch_size": 4},
        "optim": {"lr": 1e-4, "betas": [0.9, 0.99], "weight_decay": 1e-4, "backbone_factor": 0.25,
                  "schedule": "cosine", "schedule_unit": "iter", "min_lr": 1e-6},
        "data": {"crop": None, "scale": None},
        "model": {"cell": "convlstm", "hidden_channels": 128, "kernel_size": 3, "csrnet": None, "init": None,
                  "allow_random_csrnet": False},
        "recurrent": {
            "window": 4,               # frames per training window (the BPTT truncation)
            "eval_window": 10,         # frames streamed per validation window
            "label_all_frames": True,  # cross-entropy on every labelled frame of the window (synthetic)
            "change_weight": 0.0,
            "smoothing_weight": 0.0,
            "smoothing_kernel": [25, 51],
            "smoothing_sigma": [10.0, 20.0],
            "warping_weight": 0.0,
            "flow": "dis",             # dis | farneback (the flow of the warping loss)
        },
    }
    rules = {
        "optim.backbone_factor": number(min=0.0),
        "model.cell": one_of("convlstm", "convgru"),
        "model.hidden_channels": POSITIVE_INT,
        "model.kernel_size": POSITIVE_INT,
        "model.csrnet": PATH, "model.init": PATH,
        "recurrent.window": integer(min=2),
        "recurrent.eval_window": POSITIVE_INT,
        "recurrent.change_weight": WEIGHT, "recurrent.smoothing_weight": WEIGHT, "recurrent.warping_weight": WEIGHT,
        "recurrent.smoothing_kernel": list_of(POSITIVE_INT, length=2),
        "recurrent.smoothing_sigma": list_of(number(above=0.0), length=2),
        "recurrent.flow": one_of("dis", "farneback"),
    }

    def __init__(self, cfg: dict):
        super().__init__(cfg)
        m, r, d = cfg["model"], cfg["recurrent"], cfg["data"]
        if not (m["csrnet"] or m["init"] or m["allow_random_csrnet"]):
            raise ConfigError("stage recurrent starts from a trained keyframe network: set model.csrnet=PATH "
                              "(stage-1 final.pth or a released CSRNet checkpoint), model.init=PATH (a recurrent "
                              "checkpoint), or model.allow_random_csrnet=true for tests")
        if d["name"] == "synthetic" and d["synthetic"]["clip_len"] < int(r["window"]):
            raise ConfigError(f"data.synthetic.clip_len {d['synthetic']['clip_len']} is shorter than the window "
                              f"{r['window']}")
        self._flow: FlowEstimator | None = None

    def build_model(self) -> nn.Module:
        m = self.cfg["model"]
        net = build_recurrent(self.cfg["data"]["num_classes"], m["cell"], csrnet=m["csrnet"] or None,
                              hidden_channels=int(m["hidden_channels"]), kernel_size=int(m["kernel_size"]))
        if m["init"]:
            load_checkpoint(net, m["init"])
        return net

    def param_groups(self, model: nn.Module) -> list[dict]:
        return encoder_decoder_param_groups(model, self.cfg["optim"])

    def train_dataset(self) -> Dataset:
        return build_window_set(self.cfg, int(self.cfg["recurrent"]["window"]))

    def val_dataset(self) -> Dataset | None:
        return build_val_set(self.cfg, length=int(self.cfg["recurrent"]["eval_window"]))

    def flow(self) -> FlowEstimator:
        """The frozen flow of the warping loss (created on first use)."""
        if self._flow is None:
            self._flow = make_flow_estimator(self.cfg["recurrent"]["flow"])
        return self._flow

    def train_step(self, model: nn.Module, batch: dict) -> dict:
        r, d = self.cfg["recurrent"], self.cfg["data"]
        frames = batch["frames"]
        b, t = frames.shape[:2]
        size = frames.shape[-2:]
        logits = full_res(model(frames).flatten(0, 1), size).float().unflatten(0, (b, t))
        if r["label_all_frames"] and "labels" in batch:
            ce = F.cross_entropy(logits.flatten(0, 1), batch["labels"].flatten(0, 1), ignore_index=d["ignore_index"])
        else:
            ce = F.cross_entropy(logits[:, -1], batch["label"], ignore_index=d["ignore_index"])
        out = {"loss_ce": ce}
        total = ce
        terms = {"change": float(r["change_weight"]), "smoothing": float(r["smoothing_weight"]),
                 "warping": float(r["warping_weight"])}
        for name, weight in terms.items():
            if weight <= 0:
                continue
            values = []
            for i in range(1, t):
                cur, prev = logits[:, i], logits[:, i - 1]
                if name == "change":
                    values.append(change_loss(cur, prev))
                elif name == "smoothing":
                    values.append(smoothing_loss(cur, prev, tuple(r["smoothing_kernel"]), tuple(r["smoothing_sigma"])))
                else:
                    with torch.no_grad():
                        flow = self.flow()(frames[:, i].float(), frames[:, i - 1].float())  # flow_t→t−1
                    values.append(flow_warping_loss(cur, prev, flow, d["ignore_index"]))
            value = torch.stack(values).mean()
            out[f"loss_{name}"] = value
            total = total + weight * value
        out["loss"] = total
        return out

    def evaluate(self, model: nn.Module, dataset: Dataset, device: torch.device) -> dict:
        d = self.cfg["data"]
        cm = ConfusionMatrix(d["num_classes"], d["ignore_index"], device=device)
        images = {}
        stream = model.stream()
        for n, i in enumerate(val_indices(dataset, d["val_limit"])):
            sample = dataset[i]
            frames = sample["frames"].to(device)
            label = sample["label"].to(device)
            stream.reset()
            for frame in frames:
                pred = stream.step(frame[None])["pred"][0]
            cm.update(pred, label)
            if n < self.cfg["train"]["tb_images"]:
                images[f"{n}_frame"] = frames[-1]
                images[f"{n}_pred"] = color(pred, self.cfg)
                images[f"{n}_label"] = color(label, self.cfg)
        cm.all_reduce()
        return {"metrics": {"miou": cm.miou(), "pixel_accuracy": cm.pixel_accuracy()}, "images": images}
