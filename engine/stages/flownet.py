"""Stage ``flownet`` (EVSS stage 1b): FlowNetS without downloaded weights.

Distilled from OpenCV flow (``flow.mode: distill``, teacher DIS or Farnebäck) and/or self-supervised
(``photometric``: SSIM-lite + Charbonnier photometric loss with edge-aware smoothness, masked by the
forward–backward consistency check once it keeps enough pixels). Evaluation: end-point error
against the ground-truth flow when the data set has it, and the warping error of the previous frame
warped onto the current one.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset

from engine import distributed as ddp
from engine.config import PATH, PROBABILITY, WEIGHT, one_of
from engine.flow_estimators import FlowEstimator, OpenCVFlow
from engine.metrics import fb_consistency_mask
from model import FlowNetS, load_checkpoint, warp
from model.flow_losses import charbonnier, flow_to_full, flow_to_quarter, smoothness, ssim_lite

from .base import Stage, val_indices
from .data import build_train_set, build_val_set


class FlowNetStage(Stage):
    """EVSS stage 1b: FlowNetS distilled from OpenCV flow and/or trained self-supervised."""

    name = "flownet"
    score_name = "score"
    defaults = {
        "train": {"epochs": 20, "batch_size": 8},
        "optim": {"lr": 1e-4, "betas": [0.9, 0.999], "weight_decay": 0.0, "schedule": "cosine",
                  "schedule_unit": "iter", "min_lr": 1e-6},
        "data": {"crop": None, "scale": None},
        "model": {"init": None},
        "flow": {
            "mode": "distill",          # distill | photometric | both
            "teacher": "dis",           # dis | farneback
            "dis_preset": "medium",
            "distill_loss": "robust",   # robust ((|d|+0.01)^0.4) | epe
            "w_distill": 1.0,
            "w_photo": 1.0,
            "w_smooth": 0.05,
            "ssim_weight": 0.85,        # photometric = ssim_weight·SSIM-lite + (1 − ssim_weight)·Charbonnier
            "occlusion": True,          # forward-backward consistency mask (UnFlow)
            "occlusion_min_kept": 0.5,  # ... applied only while it keeps at least this share of pixels
            "fb_alpha1": 0.01,
            "fb_alpha2": 0.5,
            "smooth_edge": 10.0,        # edge-aware smoothness weight exp(−edge·|∇I|)
        },
    }
    rules = {
        "model.init": PATH,
        "flow.mode": one_of("distill", "photometric", "both"),
        "flow.teacher": one_of("dis", "farneback"),
        "flow.dis_preset": one_of("ultrafast", "fast", "medium"),
        "flow.distill_loss": one_of("robust", "epe"),
        "flow.w_distill": WEIGHT, "flow.w_photo": WEIGHT, "flow.w_smooth": WEIGHT,
        "flow.ssim_weight": PROBABILITY,
        "flow.occlusion_min_kept": PROBABILITY,
        "flow.fb_alpha1": WEIGHT, "flow.fb_alpha2": WEIGHT,
        "flow.smooth_edge": WEIGHT,
    }

    def __init__(self, cfg: dict):
        super().__init__(cfg)
        self._teacher: FlowEstimator | None = None

    def build_model(self) -> nn.Module:
        net = FlowNetS()
        if self.cfg["model"]["init"]:
            load_checkpoint(net, self.cfg["model"]["init"])
        return net

    def train_dataset(self) -> Dataset:
        return build_train_set(self.cfg, self.cfg["data"]["offsets"] or [-1])

    def val_dataset(self) -> Dataset | None:
        return build_val_set(self.cfg, length=2)

    def teacher(self) -> FlowEstimator:
        """The OpenCV flow the network is distilled from (created on first use)."""
        if self._teacher is None:
            f = self.cfg["flow"]
            self._teacher = OpenCVFlow(f["teacher"], preset=f["dis_preset"])
        return self._teacher

    def train_step(self, model: nn.Module, batch: dict) -> dict:
        f = self.cfg["flow"]
        previous, current = batch["frames"][:, 0], batch["frames"][:, 1]
        size = current.shape[-2:]
        photometric = f["mode"] in ("photometric", "both")
        distill = f["mode"] in ("distill", "both")
        b = current.shape[0]
        # one forward for both directions when the photometric loss needs the backward flow too
        pairs = torch.cat([current, previous], 1)
        if photometric:
            pairs = torch.cat([pairs, torch.cat([previous, current], 1)], 0)
        flows_q = model(pairs).float()
        flow_q = flows_q[:b]
        out: dict[str, Tensor] = {}
        loss = flow_q.new_zeros(())
        if distill:
            with torch.no_grad():
                target = flow_to_quarter(self.teacher()(current.float(), previous.float()), flow_q.shape[-2:])
            diff = flow_q - target
            if f["distill_loss"] == "epe":
                ld = (diff.pow(2).sum(1) + 1e-8).sqrt().mean()
            else:
                ld = charbonnier(diff).mean()
            out["loss_distill"] = ld
            out["epe_teacher_q"] = (diff.detach().pow(2).sum(1) + 1e-12).sqrt().mean()
            loss = loss + f["w_distill"] * ld
        if photometric:
            images = torch.cat([previous, current], 0)   # what each direction samples from
            targets = torch.cat([current, previous], 0)  # what it should reproduce
            full = flow_to_full(flows_q, size)
            warped = warp(images.float(), full)
            err = (1 - f["ssim_weight"]) * charbonnier(targets.float() - warped).mean(1, keepdim=True) \
                + f["ssim_weight"] * ssim_lite(targets.float(), warped)
            if f["occlusion"]:
                fw, bw = full[:b], full[b:]
                with torch.no_grad():
                    mask = torch.cat([fb_consistency_mask(fw, bw, alpha=f["fb_alpha1"], beta=f["fb_alpha2"]),
                                      fb_consistency_mask(bw, fw, alpha=f["fb_alpha1"], beta=f["fb_alpha2"])],
                                     0).unsqueeze(1).float()
                    # From random weights the two directions disagree almost everywhere and the mask
                    # would silence the loss for good: mask only once it keeps enough pixels.
                    kept = mask.mean()
                    mask = torch.where(kept >= f["occlusion_min_kept"], mask, torch.ones_like(mask))
                lp = (err * mask).sum() / mask.sum().clamp_min(1.0)
                out["occluded"] = 1 - kept
            else:
                lp = err.mean()
            targets_q = F.adaptive_avg_pool2d(targets.float(), flows_q.shape[-2:])
            ls = smoothness(flows_q, targets_q, f["smooth_edge"])
            out["loss_photo"], out["loss_smooth"] = lp, ls
            loss = loss + f["w_photo"] * lp + f["w_smooth"] * ls
        out["loss"] = loss
        return out

    def evaluate(self, model: nn.Module, dataset: Dataset, device: torch.device) -> dict:
        """End-point error against ground truth (when the data set has flows) and warping error of
        the previous frame warped onto the current one, on each window's last pair."""
        sums = torch.zeros(4, dtype=torch.float64, device=device)  # epe, n_epe, photo, n
        images = {}
        for n, i in enumerate(val_indices(dataset, self.cfg["data"]["val_limit"])):
            sample = dataset[i]
            frames = sample["frames"].to(device)
            current, previous = frames[-1:], frames[-2:-1]
            full = flow_to_full(model(torch.cat([current, previous], 1)).float(), current.shape[-2:])
            if "flows" in sample:
                gt = sample["flows"][-1:].to(device)
                sums[0] += (full - gt).pow(2).sum(1).sqrt().mean()
                sums[1] += 1
            sums[2] += (warp(previous, full) - current).abs().mean()
            sums[3] += 1
            if ddp.is_main() and n < self.cfg["train"]["tb_images"]:
                images[f"{n}_frame"] = current[0]
                images[f"{n}_warped_previous"] = warp(previous, full)[0]
                mag = full[0].norm(dim=0, keepdim=True)
                images[f"{n}_flow_magnitude"] = (mag / mag.max().clamp_min(1e-6)).expand(3, -1, -1)
        if ddp.info().distributed:
            torch.distributed.all_reduce(sums)
        metrics = {"warp_l1": float(sums[2] / sums[3].clamp_min(1))}
        if sums[1] > 0:
            metrics["epe"] = float(sums[0] / sums[1])
            metrics["score"] = -metrics["epe"]
        else:
            metrics["score"] = -metrics["warp_l1"]
        return {"metrics": metrics, "images": images}
