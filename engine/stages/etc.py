"""ETC's temporal losses for the per-frame stage ``csrnet`` (the ``etc:`` config section).

Stage-1 CSRNet training on pairs (labelled frame t, frame t + ``etc.offset``) adds, besides the
cross-entropy on frame t, ``motion_weight`` × the motion loss (prediction at t against the one at
t+1 warped back by a frozen flow, occlusion-weighted), ``distill_weight`` × the pixel-wise KL to a
frozen teacher on both frames, and ``pair_weight`` × the pair-wise inter-frame consistency of
student vs teacher (:mod:`model.temporal_losses`; Liu et al. 2020). The flow is OpenCV DIS
(``flow: dis``), Farnebäck, or a FlowNet checkpoint (``flow: flownet``, ``flownet_checkpoint``),
computed on the fly without gradients; the teacher is a CSRNet checkpoint (``teacher_checkpoint``),
needed by the two distillation terms. The losses are off while every weight is 0.
"""
from __future__ import annotations

import logging

import torch
from torch import Tensor, nn

from engine.config import PATH, POSITIVE_INT, WEIGHT, ConfigError, Rule, integer, number, one_of
from engine.flow_estimators import FlowEstimator, make_flow_estimator
from model import CSRNet, load_checkpoint
from model.temporal_losses import motion_loss, occlusion_mask, pairwise_consistency, pixelwise_kd

from .base import full_res

log = logging.getLogger("evss.train")

ETC_DEFAULTS = {
    "motion_weight": 0.0,        # ETC's st_weight (0.4 in its flow model, 0.01 in its full recipe)
    "distill_weight": 0.0,       # pixel-wise KL to the teacher, summed over both frames
    "pair_weight": 0.0,          # pair-wise inter-frame affinity, student vs teacher
    "temperature": 1.0,
    "pair_pool": 1,              # average-pool the 1/4-grid logits before the N×N affinity
    "offset": 1,                 # the second frame of a pair: t + offset
    "flow": "dis",               # dis | farneback | flownet
    "dis_preset": "medium",
    "flownet_checkpoint": None,
    "teacher_checkpoint": None,
}

ETC_RULES: dict[str, Rule] = {
    "etc.motion_weight": WEIGHT, "etc.distill_weight": WEIGHT, "etc.pair_weight": WEIGHT,
    "etc.temperature": number(above=0.0),
    "etc.pair_pool": POSITIVE_INT,
    "etc.offset": integer(),
    "etc.flow": one_of("dis", "farneback", "flownet"),
    "etc.dis_preset": one_of("ultrafast", "fast", "medium"),
    "etc.flownet_checkpoint": PATH,
    "etc.teacher_checkpoint": PATH,
}


class ETCObjective:
    """ETC's temporal losses for one batch of pairs (see the module doc); holds the frozen flow
    estimator and teacher, created on first use on the inputs' device."""

    def __init__(self, cfg: dict):
        self.e = cfg["etc"]
        self.num_classes = cfg["data"]["num_classes"]
        weights = [float(self.e[k]) for k in ("motion_weight", "distill_weight", "pair_weight")]
        self.enabled = any(w > 0 for w in weights)
        self.needs_teacher = float(self.e["distill_weight"]) > 0 or float(self.e["pair_weight"]) > 0
        if self.needs_teacher and not self.e["teacher_checkpoint"]:
            raise ConfigError("etc.distill_weight / etc.pair_weight need a frozen teacher: set "
                              "etc.teacher_checkpoint=PATH (a CSRNet checkpoint), or set those weights to 0")
        if int(self.e["offset"]) == 0:
            raise ConfigError("etc.offset must be non-zero (the pair's second frame)")
        self._flow: FlowEstimator | None = None
        self._teacher: nn.Module | None = None

    def flow(self) -> FlowEstimator:
        if self._flow is None:
            self._flow = make_flow_estimator(self.e["flow"], preset=self.e["dis_preset"],
                                             flownet_checkpoint=self.e["flownet_checkpoint"])
        return self._flow

    def teacher(self, device: torch.device) -> nn.Module:
        if self._teacher is None:
            teacher = CSRNet(self.num_classes).to(device)
            load_checkpoint(teacher, self.e["teacher_checkpoint"])
            self._teacher = teacher.eval().requires_grad_(False)
            log.info("ETC teacher loaded from %s", self.e["teacher_checkpoint"])
        return self._teacher

    def losses(self, frame_t: Tensor, frame_next: Tensor, logits_q: Tensor, logits_next_q: Tensor) -> dict[str, Tensor]:
        """Weighted ETC terms and their sum ``loss_etc``.

        frame_t, frame_next: B×3×H×W in [0, 1]; logits_q, logits_next_q: the student's 1/4-grid
        logits of both frames.
        """
        e = self.e
        out: dict[str, Tensor] = {}
        total = logits_q.new_zeros(())
        if float(e["motion_weight"]) > 0:
            size = frame_t.shape[-2:]
            with torch.no_grad():
                flow = self.flow()(frame_t.float(), frame_next.float())  # flow_t→t+1
                mask = occlusion_mask(frame_t, frame_next, flow)
            lm = motion_loss(full_res(logits_q, size).float(), full_res(logits_next_q, size).float(), flow, mask)
            out["loss_motion"], out["occlusion_mean"] = lm, 1 - mask.mean()
            total = total + float(e["motion_weight"]) * lm
        if self.needs_teacher:
            teacher = self.teacher(frame_t.device)
            with torch.no_grad():
                t_t, t_next = teacher(torch.cat([frame_t, frame_next])).float().chunk(2)
            s_t, s_next = logits_q.float(), logits_next_q.float()
            if float(e["distill_weight"]) > 0:
                temperature = float(e["temperature"])
                lk = pixelwise_kd(s_t, t_t, temperature) + pixelwise_kd(s_next, t_next, temperature)
                out["loss_distill"] = lk
                total = total + float(e["distill_weight"]) * lk
            if float(e["pair_weight"]) > 0:
                lp = pairwise_consistency(s_t, s_next, t_t, t_next, pool=int(e["pair_pool"]))
                out["loss_pair"] = lp
                total = total + float(e["pair_weight"]) * lp
        out["loss_etc"] = total
        return out
