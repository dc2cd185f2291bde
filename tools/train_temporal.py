"""Temporal training options: ETC losses for stage 1 and the ``recurrent`` stage (used by tools/train.py).

ETC (``etc:`` section of a csrnet config; off while every weight is 0)
    Stage-1 CSRNet training on pairs (labelled frame t, frame t + ``etc.offset``) with, besides the
    cross-entropy on frame t, ``motion_weight`` × the motion loss (prediction at t against the one
    at t+1 warped back by a frozen flow, occlusion-weighted), ``distill_weight`` × the pixel-wise KL
    to a frozen teacher on both frames, and ``pair_weight`` × the pair-wise inter-frame consistency
    of student vs teacher (:mod:`model.temporal_losses`). The flow is OpenCV DIS (``flow: dis``) or a
    FlowNet checkpoint (``flow: flownet``, ``flownet_checkpoint``), computed on the fly without
    gradients; the teacher is a CSRNet checkpoint (``teacher_checkpoint``), needed by the two
    distillation terms.

Stage ``recurrent``
    :class:`model.recurrent.RecurrentCSRNet` (ConvLSTM or ConvGRU between CSRNet's encoder and
    decoder) initialised from a stage-1 CSRNet checkpoint (``model.csrnet``) and trained on windows
    of ``recurrent.window`` consecutive frames with truncated back-propagation through time (each
    window starts from a zero state and back-propagates through all of its steps). Cross-entropy on
    the labelled frames of the window (every frame on the synthetic set, the last one on
    Cityscapes/CamVid), plus the thesis's consistency losses between consecutive predictions as
    options: ``change_weight``, ``smoothing_weight``, ``warping_weight`` (flow from ``flow``).
    Evaluation streams each validation window from a zero state and scores its labelled frame.
"""
from __future__ import annotations

import logging

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset

from engine.config import ConfigError
from engine.trainer import Stage, encoder_decoder_param_groups

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

RECURRENT_DEFAULTS = {
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


def make_training_flow(source: str, preset: str = "medium", flownet_checkpoint: str | None = None):
    """A frozen flow estimator ``est(current, previous) -> flow current→previous`` (full resolution)."""
    from engine.flow_estimators import ModelFlow, OpenCVFlow
    if source in ("dis", "farneback"):
        return OpenCVFlow(source, preset=preset)
    if source == "flownet":
        if not flownet_checkpoint:
            raise ConfigError("etc.flow=flownet needs etc.flownet_checkpoint=PATH (a stage-1b FlowNet or "
                              "released checkpoint); or use etc.flow=dis")
        from model import FlowNetS, load_checkpoint
        net = FlowNetS()
        load_checkpoint(net, flownet_checkpoint)
        net.eval().requires_grad_(False)
        return ModelFlow(net, scale=4, name="flownet")
    raise ConfigError(f"flow source must be dis, farneback or flownet, got {source!r}")


class ETCObjective:
    """ETC's temporal losses for one batch of pairs (see the module doc); holds the frozen flow
    estimator and teacher, created on first use on the inputs' device."""

    def __init__(self, cfg: dict):
        self.e = cfg["etc"]
        self.num_classes = cfg["data"]["num_classes"]
        weights = [float(self.e[k]) for k in ("motion_weight", "distill_weight", "pair_weight")]
        if any(w < 0 for w in weights):
            raise ConfigError(f"etc weights must be >= 0, got {weights}")
        self.enabled = any(w > 0 for w in weights)
        self.needs_teacher = float(self.e["distill_weight"]) > 0 or float(self.e["pair_weight"]) > 0
        if self.needs_teacher and not self.e["teacher_checkpoint"]:
            raise ConfigError("etc.distill_weight / etc.pair_weight need a frozen teacher: set "
                              "etc.teacher_checkpoint=PATH (a CSRNet checkpoint), or set those weights to 0")
        if int(self.e["offset"]) == 0:
            raise ConfigError("etc.offset must be non-zero (the pair's second frame)")
        self._flow = None
        self._teacher = None

    def flow(self):
        if self._flow is None:
            self._flow = make_training_flow(self.e["flow"], self.e["dis_preset"], self.e["flownet_checkpoint"])
        return self._flow

    def teacher(self, device: torch.device) -> nn.Module:
        if self._teacher is None:
            from model import CSRNet, load_checkpoint
            teacher = CSRNet(self.num_classes).to(device)
            load_checkpoint(teacher, self.e["teacher_checkpoint"])
            self._teacher = teacher.eval().requires_grad_(False)
            log.info("ETC teacher loaded from %s", self.e["teacher_checkpoint"])
        return self._teacher

    def losses(self, frame_t: Tensor, frame_next: Tensor, logits_q: Tensor, logits_next_q: Tensor,
               full_res) -> dict[str, Tensor]:
        """Weighted ETC terms and their sum ``loss_etc``.

        frame_t, frame_next: B×3×H×W; logits_q, logits_next_q: the student's 1/4-grid logits of
        both frames; ``full_res(logits_q, size)`` upsamples them to H×W (the project's convention).
        """
        from model.temporal_losses import motion_loss, occlusion_mask, pairwise_consistency, pixelwise_kd
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


# ---------------------------------------------------------------------------------------------- data
class AugmentedWindows(Dataset):
    """Evaluation-style windows (``frames`` T×3×H×W, ``label``, optional ``labels``/``flows``) with a
    training transform applied to the whole window, seeded per (seed, epoch, index) like the pair sets."""

    def __init__(self, windows: Dataset, transform, seed: int):
        self.windows, self.transform, self.seed, self.epoch = windows, transform, int(seed), 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, index: int) -> dict:
        sample = self.windows[index]
        if self.transform is not None:
            sample = self.transform(sample, np.random.default_rng((self.seed, self.epoch, index)))
        return sample


class SyntheticClipWindows(Dataset):
    """Every window of ``length`` consecutive frames of the synthetic training clips, all labelled.

    The clips are those of the stage-1 training set (same seeds, length and size), rendered once
    without flows, so the recurrent net sees exactly the scenes and frames the per-frame net saw.
    Sample: ``frames`` T×3×H×W float in [0, 1], ``labels`` T×H×W int64, ``label`` (the last frame's),
    ``id``.
    """

    def __init__(self, split: str, num_clips: int, clip_len: int, height: int, width: int, num_classes: int,
                 length: int, seed: int):
        if clip_len < length:
            raise ConfigError(f"data.synthetic.clip_len {clip_len} is shorter than the window {length}")
        self.split, self.seed = split, int(seed)
        self.args = (clip_len, height, width, num_classes)
        self.items = [(c, s) for c in range(num_clips) for s in range(clip_len - length + 1)]
        self.length = length
        self._cache: dict[int, dict] = {}

    def __len__(self) -> int:
        return len(self.items)

    def _clip(self, clip: int) -> dict:
        if clip not in self._cache:
            from dataset.synthetic import clip_seed, render_clip
            from dataset.video import frames_to_tensor
            data = render_clip(clip_seed(self.split, clip, self.seed), *self.args, occlusion=False, flows=False)
            self._cache[clip] = {"frames": frames_to_tensor(data["frames"]),
                                 "labels": torch.from_numpy(data["labels"].astype(np.int64))}
        return self._cache[clip]

    def __getitem__(self, index: int) -> dict:
        clip, start = self.items[index]
        data = self._clip(clip)
        window = slice(start, start + self.length)
        labels = data["labels"][window]
        return {"frames": data["frames"][window], "labels": labels, "label": labels[-1],
                "id": f"synthetic_{self.split}_{clip:04d}_{start + self.length - 1:03d}"}


def training_windows(cfg: dict, length: int) -> Dataset:
    """Windows of ``length`` consecutive frames for recurrent training, with the training transform.

    Synthetic: every window of the stage-1 training clips (:class:`SyntheticClipWindows`).
    Cityscapes/CamVid: the windows ending at each labelled training frame
    (:class:`dataset.video.VideoWindowDataset`, windows that run off their sequence skipped).
    """
    from dataset import build_dataset
    from tools.train import _transform
    d = cfg["data"]
    if d["name"] == "synthetic":
        s = d["synthetic"]
        windows = SyntheticClipWindows(d["train_split"], s["train_clips"], s["clip_len"], s["height"], s["width"],
                                       d["num_classes"], length, cfg["seed"])
    else:
        windows = build_dataset(d["name"], d["root"], d["train_split"], "eval", list_file=d["list_file"],
                                length=length, missing="skip", max_gap=d["max_gap"])
    return AugmentedWindows(windows, _transform(cfg), cfg["seed"])


# ---------------------------------------------------------------------------------------------- stage
class RecurrentStage(Stage):
    """The recurrent baseline (see the module doc)."""

    name = "recurrent"
    score_name = "miou"

    def __init__(self, cfg: dict):
        super().__init__(cfg)
        m, r = cfg["model"], cfg["recurrent"]
        if not (m["csrnet"] or m["init"] or m["allow_random_csrnet"]):
            raise ConfigError("stage recurrent starts from a trained keyframe network: set model.csrnet=PATH "
                              "(stage-1 final.pth or a released CSRNet checkpoint), model.init=PATH (a recurrent "
                              "checkpoint), or model.allow_random_csrnet=true for tests")
        if int(r["window"]) < 2:
            raise ConfigError(f"recurrent.window must be >= 2 frames, got {r['window']}")
        self._flow = None

    def build_model(self) -> nn.Module:
        from model import build_recurrent, load_checkpoint
        m = self.cfg["model"]
        net = build_recurrent(self.cfg["data"]["num_classes"], m["cell"], csrnet=m["csrnet"] or None,
                              hidden_channels=int(m["hidden_channels"]), kernel_size=int(m["kernel_size"]))
        if m["init"]:
            load_checkpoint(net, m["init"])
        return net

    def param_groups(self, model: nn.Module) -> list[dict]:
        return encoder_decoder_param_groups(model, self.cfg["optim"])

    def train_dataset(self):
        return training_windows(self.cfg, int(self.cfg["recurrent"]["window"]))

    def val_dataset(self):
        from tools.train import build_val_set
        return build_val_set(self.cfg, length=int(self.cfg["recurrent"]["eval_window"]))

    def train_step(self, model: nn.Module, batch: dict) -> dict:
        from model.temporal_losses import change_loss, flow_warping_loss, smoothing_loss
        from tools.train import _full_res
        r, d = self.cfg["recurrent"], self.cfg["data"]
        frames = batch["frames"]
        b, t = frames.shape[:2]
        size = frames.shape[-2:]
        logits = _full_res(model(frames).flatten(0, 1), size).float().unflatten(0, (b, t))
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

    def flow(self):
        if self._flow is None:
            self._flow = make_training_flow(self.cfg["recurrent"]["flow"])
        return self._flow

    def evaluate(self, model: nn.Module, dataset, device) -> dict:
        from engine.metrics import ConfusionMatrix
        from tools.train import _color, _val_indices
        d = self.cfg["data"]
        cm = ConfusionMatrix(d["num_classes"], d["ignore_index"], device=device)
        images = {}
        stream = model.stream()
        for n, i in enumerate(_val_indices(dataset, d["val_limit"])):
            sample = dataset[i]
            frames = sample["frames"].to(device)
            label = sample["label"].to(device)
            stream.reset()
            for frame in frames:
                pred = stream.step(frame[None])["pred"][0]
            cm.update(pred, label)
            if n < self.cfg["train"]["tb_images"]:
                images[f"{n}_frame"] = frames[-1]
                images[f"{n}_pred"] = _color(pred, self.cfg)
                images[f"{n}_label"] = _color(label, self.cfg)
        cm.all_reduce()
        return {"metrics": {"miou": cm.miou(), "pixel_accuracy": cm.pixel_accuracy()}, "images": images}
