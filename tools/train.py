"""Train one EVSS stage: the keyframe CSRNet, the FlowNet, or EVSS itself (FlowNet + CoNet).

    python -m tools.train --stage csrnet|flownet|evss|recurrent|davss_dmnet|davss --config configs/<recipe>.yaml [key=value ...]
    torchrun --nproc_per_node N -m tools.train --stage ... (DistributedDataParallel; nccl / gloo)

Stages
  csrnet   stage 1: CSRNet on labelled frames (the authors' recipe: Adam (0.9, 0.99), lr 4e-4 for new
           layers, lr/4 and weight decay/4 for the ImageNet encoder, weight decay 1e-4, cosine to 1e-6,
           random scale, mirror, crop, cross-entropy with the ignore label). Optional ETC temporal
           losses on consecutive-frame pairs (``etc:``; see tools/train_temporal.py).
  flownet  stage 1b: FlowNetS without downloaded weights: distilled from OpenCV DIS flow and/or
           self-supervised (photometric + smoothness, occlusion-aware).
  evss     stage 2: CSRNet frozen, FlowNet and CoNet trained with the model's own loss (Adam 1e-4,
           cosine to 1e-6); periodic evaluation at keyframe distances {1, 5, 9}.
  recurrent  CSRNet + ConvLSTM/ConvGRU from a stage-1 checkpoint, truncated BPTT on windows of
           consecutive frames, the thesis's consistency losses as options (tools/train_temporal.py).
  davss_dmnet, davss  DAVSS's two stages (DMNet, then FlowNet + CFNet) as the original
           (tools/train_davss.py).

Every run folder holds config.yaml, env.json, git_revision, last/best/final.pth and TensorBoard
events; a run resumes from its last.pth automatically (``train.auto_resume=false`` to refuse) or from
``--resume PATH``. The last line printed is the run's JSON summary.
"""
from __future__ import annotations

import argparse
import copy
import json
import logging
import os
import sys

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from engine import distributed as ddp
from engine.config import ConfigError, build_config
from engine.trainer import TRAINER_DEFAULTS, Stage, Trainer, encoder_decoder_param_groups
from tools.train_davss import DAVSS_STAGE_DEFAULTS, DAVSSDMNetStage, DAVSSStage
from tools.train_temporal import ETC_DEFAULTS, RECURRENT_DEFAULTS, ETCObjective, RecurrentStage

log = logging.getLogger("evss.train")

DATA_DEFAULTS = {
    "name": "synthetic",        # cityscapes | camvid | camvid_video | camvid_segnet | synthetic
    "root": None,
    "train_split": "train",
    "val_split": "val",
    "list_file": None,
    "val_list_file": None,
    "max_gap": None,            # SegNet CamVid layout: split sequences at larger frame-number jumps
    "missing": None,            # error | skip (None: the data set's default)
    "num_classes": 19,
    "ignore_index": 255,
    "offsets": None,            # neighbour offsets of training pairs (None: the stage's default)
    "crop": None,               # [height, width] random crop (None: none)
    "scale": None,              # [min, max] random scale (None: none)
    "flip": 0.5,
    "val_limit": None,          # evaluate only the first N windows
    "synthetic": {"train_clips": 8, "val_clips": 4, "clip_len": 20, "height": 128, "width": 256,
                  "label_stride": 1},
}

STAGE_DEFAULTS = {
    "csrnet": {
        "train": {"epochs": 100, "batch_size": 8},
        "optim": {"lr": 4e-4, "betas": [0.9, 0.99], "weight_decay": 1e-4, "backbone_factor": 0.25,
                  "schedule": "cosine", "schedule_unit": "epoch", "min_lr": 1e-6},
        "data": {"crop": [768, 768], "scale": [0.75, 2.0]},
        "model": {"pretrained_backbone": True, "init": None},
        "etc": ETC_DEFAULTS,
    },
    "flownet": {
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
    },
    "evss": {
        "train": {"epochs": 100, "batch_size": 8, "eval_every": 5, "find_unused_parameters": True},
        "optim": {"lr": 1e-4, "betas": [0.9, 0.999], "weight_decay": 0.0, "schedule": "cosine",
                  "schedule_unit": "epoch", "min_lr": 1e-6},
        "data": {"crop": [512, 1024], "scale": None},
        "model": {"csrnet": None, "flownet": None, "init": None, "wf": 0.2,
                  "loss_weights": [0.2, 0.5, 0.1, 0.2], "allow_random_csrnet": False},
        "eval": {"distances": [1, 5, 9], "plain_warp": True},
    },
    "recurrent": RECURRENT_DEFAULTS,
    **DAVSS_STAGE_DEFAULTS,
}


def defaults(stage: str) -> dict:
    cfg = copy.deepcopy(TRAINER_DEFAULTS)
    cfg["stage"] = stage
    cfg["data"] = copy.deepcopy(DATA_DEFAULTS)
    for section, values in copy.deepcopy(STAGE_DEFAULTS[stage]).items():
        if isinstance(cfg.get(section), dict):
            cfg[section].update(values)
        else:
            cfg[section] = values
    return cfg


# ---------------------------------------------------------------------------------------------- data
def _transform(cfg: dict, with_scale: bool = True):
    from dataset.transforms import train_transform
    d = cfg["data"]
    crop = tuple(d["crop"]) if d["crop"] else None
    scale = tuple(d["scale"]) if (d["scale"] and with_scale) else None
    if crop is None and scale is None and not d["flip"]:
        return None
    return train_transform(crop, d["ignore_index"], scale, float(d["flip"]))


def build_train_set(cfg: dict, offsets, with_flow: bool = False, with_scale: bool = True):
    from dataset import build_dataset
    d = cfg["data"]
    transform = _transform(cfg, with_scale)
    offsets = tuple(offsets) if offsets is not None else None
    if d["name"] == "synthetic":
        s = d["synthetic"]
        from dataset.synthetic import SyntheticVideoDataset
        kw = {} if offsets is None else {"offsets": offsets}
        return SyntheticVideoDataset(split=d["train_split"], mode="train", num_clips=s["train_clips"],
                             clip_len=s["clip_len"], height=s["height"], width=s["width"],
                             num_classes=d["num_classes"], transform=transform, seed=cfg["seed"],
                             label_stride=s["label_stride"], with_flow=with_flow, **kw)
    return build_dataset(d["name"], d["root"], d["train_split"], "train", list_file=d["list_file"], offsets=offsets,
                         transform=transform, missing=d["missing"], seed=cfg["seed"], max_gap=d["max_gap"])


def build_val_set(cfg: dict, length: int):
    from dataset import build_dataset
    d = cfg["data"]
    if not d["val_split"]:
        return None
    if d["name"] == "synthetic":
        s = d["synthetic"]
        if not s["val_clips"]:
            return None
        from dataset.synthetic import SyntheticVideoDataset
        return SyntheticVideoDataset(split=d["val_split"], mode="eval", num_clips=s["val_clips"],
                             clip_len=s["clip_len"], height=s["height"], width=s["width"],
                             num_classes=d["num_classes"], window=length, seed=cfg["seed"])
    # windows that run off the start of their sequence are left out (the labelled frame needs length-1 predecessors)
    return build_dataset(d["name"], d["root"], d["val_split"], "eval", list_file=d["val_list_file"], length=length,
                         missing=d["missing"] or "skip", max_gap=d["max_gap"])


def _val_indices(dataset, limit) -> range:
    """This rank's share of the first ``limit`` windows."""
    total = len(dataset) if limit is None else min(int(limit), len(dataset))
    info = ddp.info()
    return range(info.rank, total, info.world_size)


def _class_set(cfg: dict):
    from dataset import CAMVID, CITYSCAPES
    return CAMVID if cfg["data"]["num_classes"] == 11 else CITYSCAPES


def _color(pred: Tensor, cfg: dict) -> Tensor:
    from dataset import colorize
    return torch.from_numpy(colorize(pred.cpu(), _class_set(cfg))).permute(2, 0, 1).float() / 255


def _full_res(logits_q: Tensor, size) -> Tensor:
    from model.blocks import upsample4
    from model.fusion import crop
    return crop(upsample4(logits_q), tuple(size))


# ---------------------------------------------------------------------------------------------- stage 1
class CSRNetStage(Stage):
    name = "csrnet"
    score_name = "miou"

    def __init__(self, cfg: dict):
        super().__init__(cfg)
        self.etc = ETCObjective(cfg)

    def build_model(self) -> nn.Module:
        from model import CSRNet, load_checkpoint
        m = self.cfg["model"]
        net = CSRNet(self.cfg["data"]["num_classes"], pretrained_backbone=bool(m["pretrained_backbone"]))
        if m["init"]:
            load_checkpoint(net, m["init"])
        return net

    def param_groups(self, model: nn.Module) -> list[dict]:
        return encoder_decoder_param_groups(model, self.cfg["optim"])

    def train_dataset(self):
        offsets = self.cfg["data"]["offsets"]
        if offsets is None and self.etc.enabled:  # ETC pairs: (labelled frame t, frame t + offset)
            offsets = [int(self.cfg["etc"]["offset"])]
        elif offsets is None:  # only the labelled frame is used; the synthetic set needs a non-zero offset
            offsets = [-1] if self.cfg["data"]["name"] == "synthetic" else [0]
        return build_train_set(self.cfg, offsets)

    def val_dataset(self):
        return build_val_set(self.cfg, length=1)

    def train_step(self, model: nn.Module, batch: dict) -> dict:
        frames, label = batch["frames"][:, -1], batch["label"]
        if not self.etc.enabled:
            logits = _full_res(model(frames), label.shape[-2:])
            loss = F.cross_entropy(logits.float(), label, ignore_index=self.cfg["data"]["ignore_index"])
            return {"loss": loss}
        neighbour = batch["frames"][:, 0]
        logits_q, neighbour_q = model(torch.cat([frames, neighbour])).chunk(2)
        ce = F.cross_entropy(_full_res(logits_q, label.shape[-2:]).float(), label,
                             ignore_index=self.cfg["data"]["ignore_index"])
        out = self.etc.losses(frames, neighbour, logits_q, neighbour_q, _full_res)
        return {**out, "loss_ce": ce, "loss": ce + out["loss_etc"]}

    def evaluate(self, model: nn.Module, dataset, device) -> dict:
        from engine.metrics import ConfusionMatrix
        d = self.cfg["data"]
        cm = ConfusionMatrix(d["num_classes"], d["ignore_index"], device=device)
        images = {}
        for n, i in enumerate(_val_indices(dataset, d["val_limit"])):
            sample = dataset[i]
            frame = sample["frames"][-1:].to(device)
            label = sample["label"].to(device)
            pred = _full_res(model(frame), label.shape[-2:]).argmax(1)[0]
            cm.update(pred, label)
            if ddp.is_main() and n < self.cfg["train"]["tb_images"]:
                images[f"{n}_frame"] = frame[0]
                images[f"{n}_pred"] = _color(pred, self.cfg)
                images[f"{n}_label"] = _color(label, self.cfg)
        cm.all_reduce()
        return {"metrics": {"miou": cm.miou(), "pixel_accuracy": cm.pixel_accuracy()}, "images": images}


# ---------------------------------------------------------------------------------------------- stage 1b
class FlowNetStage(Stage):
    name = "flownet"
    score_name = "score"

    def __init__(self, cfg: dict):
        super().__init__(cfg)
        self._teacher = None
        mode = cfg["flow"]["mode"]
        if mode not in ("distill", "photometric", "both"):
            raise ConfigError(f"flow.mode must be distill, photometric or both, got {mode!r}")

    def build_model(self) -> nn.Module:
        from model import FlowNetS, load_checkpoint
        net = FlowNetS()
        if self.cfg["model"]["init"]:
            load_checkpoint(net, self.cfg["model"]["init"])
        return net

    def train_dataset(self):
        offsets = self.cfg["data"]["offsets"] or [-1]
        return build_train_set(self.cfg, offsets, with_scale=True)

    def val_dataset(self):
        return build_val_set(self.cfg, length=2)

    def teacher(self):
        if self._teacher is None:
            from engine.flow_estimators import OpenCVFlow
            f = self.cfg["flow"]
            self._teacher = OpenCVFlow(f["teacher"], preset=f["dis_preset"])
        return self._teacher

    def train_step(self, model: nn.Module, batch: dict) -> dict:
        from engine.metrics import fb_consistency_mask
        from model.flow_losses import charbonnier, flow_to_full, flow_to_quarter, smoothness, ssim_lite
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
            from model import warp
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

    def evaluate(self, model: nn.Module, dataset, device) -> dict:
        """End-point error against ground truth (when the data set has flows) and warping error of
        the previous frame warped onto the current one, on each window's last pair."""
        from model import warp
        from model.flow_losses import flow_to_full
        sums = torch.zeros(4, dtype=torch.float64, device=device)  # epe, n_epe, photo, n
        images = {}
        for n, i in enumerate(_val_indices(dataset, self.cfg["data"]["val_limit"])):
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


# ---------------------------------------------------------------------------------------------- stage 2
class EVSSStage(Stage):
    name = "evss"
    score_name = "miou_mean"

    def __init__(self, cfg: dict):
        super().__init__(cfg)
        m = cfg["model"]
        if not (m["csrnet"] or m["init"] or m["allow_random_csrnet"]):
            raise ConfigError("stage evss needs a trained keyframe network: set model.csrnet=PATH (stage-1 "
                              "final.pth or a released CSRNet checkpoint), model.init=PATH (a full EVSS "
                              "checkpoint), or model.allow_random_csrnet=true for tests")

    def build_model(self) -> nn.Module:
        from model import build_evss, load_checkpoint
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

    def train_dataset(self):
        return build_train_set(self.cfg, self.cfg["data"]["offsets"])

    def val_dataset(self):
        distances = self.cfg["eval"]["distances"]
        return build_val_set(self.cfg, length=max(distances) + 1)

    def train_step(self, model: nn.Module, batch: dict) -> dict:
        out = model(batch["frames"], batch["edge"])
        return {k: v for k, v in out.items() if k.startswith("loss")}

    def evaluate(self, model: nn.Module, dataset, device) -> dict:
        from engine.evaluate import evaluate_distances
        e, d = self.cfg["eval"], self.cfg["data"]
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
        if ddp.is_main() and self.cfg["train"]["tb_images"] and len(dataset):
            sample = dataset[0]
            dmax = max(e["distances"])
            frames = sample["frames"].to(device)
            out = model.segment_clip([f[None] for f in frames[-dmax - 1:]])
            size = frames.shape[-2:]
            images["0_frame"] = frames[-1]
            images[f"0_pred_d{dmax}"] = _color(out["pred"][0], self.cfg)
            images["0_label"] = _color(sample["label"], self.cfg)
            distortion = out["dm_fine"] if "dm_fine" in out else out["dm_up"]  # EVSS / DAVSS, full resolution
            images[f"0_distortion_d{dmax}"] = distortion[0, :, :size[0], :size[1]].expand(3, -1, -1)
        return {"metrics": metrics, "images": images}


STAGES = {"csrnet": CSRNetStage, "flownet": FlowNetStage, "evss": EVSSStage, "recurrent": RecurrentStage,
          "davss_dmnet": DAVSSDMNetStage, "davss": DAVSSStage}


# ---------------------------------------------------------------------------------------------- CLI
def parse_args(argv=None, stage: str | None = None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    if stage is None:
        parser.add_argument("--stage", choices=sorted(STAGES), help="stage to train (default: the config's 'stage')")
    parser.add_argument("--config", help="YAML recipe (configs/*.yaml)")
    parser.add_argument("--resume", help="checkpoint to resume from (default: OUT_DIR/last.pth when it exists)")
    parser.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides (dotted keys)")
    args = parser.parse_args(argv)
    if stage is not None:
        args.stage = stage
    return args


def resolve_config(stage: str | None, config: str | None, overrides) -> dict:
    if stage is None:
        if config is None:
            raise ConfigError("give --stage or a --config that names its stage")
        from engine.config import load_yaml
        stage = load_yaml(config).get("stage")
        if stage not in STAGES:
            raise ConfigError(f"{config}: 'stage' must be one of {sorted(STAGES)}, got {stage!r} (or pass --stage)")
    cfg = build_config(defaults(stage), config, overrides)
    if cfg["stage"] != stage:
        raise ConfigError(f"config is for stage {cfg['stage']!r} but --stage {stage} was given")
    return cfg


def run(stage: str | None, config: str | None = None, overrides=(), resume: str | None = None) -> dict:
    cfg = resolve_config(stage, config, overrides)
    trainer = Trainer(cfg, STAGES[cfg["stage"]](cfg), resume=resume)
    try:
        return trainer.fit()
    finally:
        ddp.cleanup()


def main(argv=None, stage: str | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv, stage)
    try:
        if args.print_config:
            from engine.config import dump
            print(dump(resolve_config(args.stage, args.config, args.overrides)), end="")
            return
        summary = run(args.stage, args.config, args.overrides, args.resume)
    except ConfigError as err:
        print(f"config error: {err}", file=sys.stderr)
        sys.exit(2)
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
