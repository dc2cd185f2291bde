"""Compare video segmentation methods on the same clips: the method registry, the checkpoints each
needs (given, from a demo run, or trained on the synthetic set), the evaluation and the latency.

A method is a :class:`Method` in :data:`METHODS`: ``build(ctx)`` returns an
:class:`engine.predictors.Predictor`, ``checkpoints`` names what it loads. Every method streams over
each clip from its first frame (:mod:`engine.stream_eval`: ``miou`` on the labelled frames, ``tc`` and
``tiou`` with OpenCV DIS flow computed once per pair and shared by every method); ``ms_per_frame`` is
the median over repeats of streaming a few frames at batch 1, the methods taking turns in every
repeat (:func:`engine.benchmark.timing.time_stages`), divided by the number of frames.
"""
from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from dataset import SyntheticVideoDataset, build_dataset
from engine.benchmark.timing import time_stages
from engine.config import ConfigError
from engine.demo import DEMO_STAGES, train_demo_stages
from engine.flow_estimators import OpenCVFlow
from engine.predictors import KeyframeStream, PerFrame, Predictor, Recurrent
from engine.report import pct
from engine.stages import train
from engine.stream_eval import StreamEvaluator, evaluate_clips
from model import DAVSS, EVSS, CSRNet, RecurrentCSRNet, build_davss, build_evss, load_checkpoint
from model.checkpoint import CheckpointNotFoundError, read_state_dict

__all__ = ["DATASETS", "DEFAULT_METHODS", "DEMO_STAGES", "METHODS", "Checkpoints", "Context", "Method",
           "SyntheticTrainer", "comparison_clips", "evaluate_methods", "latency", "results_markdown"]

DATASETS = ("synthetic", "cityscapes", "camvid")
DEFAULT_METHODS = ("per_frame", "etc", "convlstm", "evss_k5", "evss_k10")


@dataclass
class Context:
    """What method builders get: the label space, the device and the checkpoints (trained on demand)."""

    num_classes: int
    device: torch.device
    checkpoint: Callable[[str], Path]


@dataclass(frozen=True)
class Method:
    """A registry entry: ``build(ctx)`` returns a :class:`Predictor`; ``checkpoints`` names what it loads."""

    build: Callable[[Context], Predictor]
    checkpoints: tuple[str, ...]
    description: str


def _csrnet(ctx: Context, name: str) -> CSRNet:
    net = CSRNet(ctx.num_classes).to(ctx.device)
    load_checkpoint(net, ctx.checkpoint(name))
    return net.eval()


def _recurrent(ctx: Context, name: str) -> RecurrentCSRNet:
    """A recurrent CSRNet with the cell and sizes its checkpoint holds."""
    state = read_state_dict(ctx.checkpoint(name))
    cell = "convgru" if "temporal.cell.candidate.weight" in state else "convlstm"
    hidden = state["temporal.proj.weight"].shape[1]
    kernel = state["temporal.cell.gates.weight"].shape[-1]
    net = RecurrentCSRNet(ctx.num_classes, cell=cell, hidden_channels=hidden, kernel_size=kernel).to(ctx.device)
    load_checkpoint(net, state)
    return net.eval()


def _evss(ctx: Context, name: str) -> EVSS:
    net = build_evss(ctx.num_classes).to(ctx.device)
    load_checkpoint(net, ctx.checkpoint(name))
    return net.eval()


def _davss(ctx: Context, name: str) -> DAVSS:
    net = build_davss(ctx.num_classes, align_corners=False, keyframe="csrnet").to(ctx.device)
    load_checkpoint(net, ctx.checkpoint(name))
    return net.eval()


#: name → method. Another method registers here with its builder and the checkpoints it needs.
METHODS: dict[str, Method] = {
    "per_frame": Method(lambda ctx: PerFrame(_csrnet(ctx, "per_frame")), ("per_frame",),
                        "keyframe network (CSRNet) on every frame"),
    "etc": Method(lambda ctx: PerFrame(_csrnet(ctx, "etc")), ("etc",),
                  "CSRNet trained with ETC's temporal losses, on every frame"),
    "convlstm": Method(lambda ctx: Recurrent(_recurrent(ctx, "convlstm")), ("convlstm",),
                       "CSRNet + ConvLSTM on the 1/32 feature, streaming"),
    "evss_k5": Method(lambda ctx: KeyframeStream(_evss(ctx, "evss"), 5), ("evss",),
                      "EVSS, keyframe every 5 frames"),
    "evss_k10": Method(lambda ctx: KeyframeStream(_evss(ctx, "evss"), 10), ("evss",),
                       "EVSS, keyframe every 10 frames"),
    "davss_k5": Method(lambda ctx: KeyframeStream(_davss(ctx, "davss"), 5), ("davss",),
                       "DAVSS (CSRNet keyframe network), keyframe every 5 frames"),
    "davss_k10": Method(lambda ctx: KeyframeStream(_davss(ctx, "davss"), 10), ("davss",),
                        "DAVSS (CSRNet keyframe network), keyframe every 10 frames"),
}


# ---------------------------------------------------------------------------------------------- checkpoints
@dataclass
class SyntheticTrainer:
    """Trains the synthetic-set checkpoints into the run folder ``out`` (each reused when its final.pth
    exists): the demo's three stages, then ``per_frame`` and ``etc`` as the same fine-tuning of the
    stage-1 network for ``iters`` iterations on consecutive-frame pairs without and with ETC's motion
    loss (so their difference is the loss alone), ``convlstm``, and DAVSS's two stages (``davss_dmnet``,
    ``davss``; their configs' iteration counts) on the demo's CSRNet and FlowNet.

    ``overrides``: per checkpoint name, config overrides (``key=value``); ``seconds``: the training
    wall time of each checkpoint trained (demo stages: 0 when reused).
    """

    out: Path
    threads: int
    iters: int
    overrides: dict[str, list[str]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    def _run(self, name: str, config: str, extra: list[str], what: str) -> Path:
        """Train checkpoint ``name`` from ``config`` into out/name unless its final.pth exists."""
        final = self.out / name / "final.pth"
        if final.is_file():
            print(f"[compare] {name}: reusing {final}", flush=True)
            return final
        print(f"[compare] training {name} ({config}, {what})", flush=True)
        start = time.perf_counter()
        train(None, config, [f"out_dir={self.out / name}", f"threads={self.threads}"] + extra
              + self.overrides.get(name, []))
        self.seconds[name] = round(time.perf_counter() - start, 1)
        print(f"[compare] {name} done in {self.seconds[name]} s", flush=True)
        return final

    def demo_stages(self) -> None:
        """The demo's three stages, in order (:func:`engine.demo.train_demo_stages`)."""
        trained = train_demo_stages(self.out, self.threads, self.overrides, tag="compare")
        for stage, seconds in trained.items():
            self.seconds.setdefault(stage, seconds)

    def finetune(self, name: str, config: str, extra: list[str], csrnet: Path, config_iters: bool = False) -> Path:
        """Train checkpoint ``name`` from ``config`` for ``iters`` iterations (``config_iters``: the config's)."""
        budget = [] if config_iters else [f"train.iters={self.iters}"]
        how = "the config's iterations" if config_iters else f"{self.iters} iterations"
        return self._run(name, config, budget + ["data.synthetic.val_clips=0"] + extra, f"{how} from {csrnet}")

    def train(self, name: str, checkpoint: Callable[[str], Path]) -> Path:
        """The checkpoint ``name``, trained here (``checkpoint`` resolves the ones it starts from)."""
        if name in DEMO_STAGES:
            self.demo_stages()
            return self.out / name / "final.pth"
        csrnet = checkpoint("csrnet")
        if name == "per_frame":   # the ETC recipe with the ETC losses off: the control of the same budget
            return self.finetune(name, "configs/synthetic_etc.yaml", [f"model.init={csrnet}", "etc.motion_weight=0",
                                                                      "data.offsets=[1]"], csrnet)
        if name == "etc":
            return self.finetune(name, "configs/synthetic_etc.yaml", [f"model.init={csrnet}"], csrnet)
        if name == "convlstm":
            return self.finetune(name, "configs/synthetic_recurrent.yaml", [f"model.csrnet={csrnet}"], csrnet)
        if name in ("davss_dmnet", "davss"):
            parts = [f"model.keyframe_checkpoint={csrnet}", f"model.flownet={checkpoint('flownet')}"]
            if name == "davss":
                parts.append(f"model.dmnet={checkpoint('davss_dmnet')}")
            return self.finetune(name, f"configs/synthetic_{name}.yaml", parts, csrnet, config_iters=True)
        raise ConfigError(f"no recipe trains checkpoint {name!r} on the synthetic set; pass --checkpoint {name}=PATH")


class Checkpoints:
    """Resolves checkpoint names: explicit paths, then a demo run, then the trainer (None: none)."""

    def __init__(self, given: dict[str, Path], from_run: Path | None, trainer: SyntheticTrainer | None):
        self.paths = dict(given)
        self.from_run = from_run
        self.trainer = trainer

    def __call__(self, name: str) -> Path:
        if name in self.paths:
            return self.paths[name]
        path = None
        if self.from_run is not None and name in DEMO_STAGES:
            path = self.from_run / name / "final.pth"
            if not path.is_file():
                raise CheckpointNotFoundError(f"--from-run {self.from_run}: {path} does not exist (not a finished demo run?)")
        elif self.trainer is not None:
            path = self.trainer.train(name, self)
        if path is None:
            raise CheckpointNotFoundError(f"checkpoint {name!r} is needed: pass --checkpoint {name}=PATH")
        self.paths[name] = path
        return path


# ---------------------------------------------------------------------------------------------- evaluation
def comparison_clips(dataset: str, split: str = "val", data_root: str | None = None, window: int = 10,
                     num_clips: int = 12, clip_len: int = 20, height: int = 96, width: int = 192,
                     num_classes: int = 19, allow_missing: bool = False) -> torch.utils.data.Dataset:
    """Evaluation clips: dicts with ``frames`` T×3×H×W, ``label`` (the last frame's), optionally
    ``labels``. Synthetic: ``num_clips`` whole clips of ``clip_len`` frames, every frame labelled;
    Cityscapes / CamVid under ``data_root``: the ``window`` frames ending at each labelled frame (those
    whose window runs off the sequence skipped; ``allow_missing``: also those whose frame or label file
    is missing, with one warning). :func:`dataset.sample_counts` of the result counts what was skipped."""
    if dataset == "synthetic":
        if allow_missing:
            raise ConfigError("--allow-missing applies to data on disk (cityscapes, camvid), not to synthetic clips")
        return SyntheticVideoDataset(split=split, mode="eval", num_clips=num_clips, clip_len=clip_len,
                                     height=height, width=width, num_classes=num_classes, window=clip_len)
    if not data_root:
        raise ConfigError(f"--dataset {dataset} needs --data-root DIR")
    return build_dataset(dataset, data_root, split, "eval", length=window, missing="skip", allow_missing=allow_missing)


def evaluate_methods(predictors: dict[str, Predictor], dataset, num_classes: int, ignore_index: int, device: torch.device,
             limit: int | None = None, on_clip: Callable[[int, int, StreamEvaluator], None] | None = None
             ) -> tuple[dict[str, dict], dict[str, str]]:
    """Stream every clip through every predictor with DIS flow; returns per predictor ``miou``, ``tc``,
    ``tiou``, ``pixel_accuracy``, ``num_pairs``, ``in_frame_fraction``, ``fb_valid_fraction``, and the
    flow description (``source``, ``description``, ``mask_tc``, ``mask_tiou``). ``on_clip(i, count,
    evaluator)`` runs after each clip."""
    evaluator = StreamEvaluator(predictors, num_classes, ignore_index, OpenCVFlow("dis"), device=device)
    evaluate_clips(evaluator, dataset, device, limit,
                   on_clip=None if on_clip is None else lambda i, count: on_clip(i, count, evaluator))
    scores = {name: {"miou": r["miou"], "tc": r["tc_etc"], "tiou": r["tc_fb"], "pixel_accuracy": r["pixel_accuracy"],
                     "num_pairs": r["num_pairs"], "in_frame_fraction": r["in_frame_fraction"],
                     "fb_valid_fraction": r["fb_valid_fraction"]}
              for name, r in evaluator.results().items()}
    info = evaluator.description()
    flow = {"source": info["flow_source"], "description": info["flow_description"], "mask_tc": info["mask_etc"],
            "mask_tiou": info["mask_fb"]}
    return scores, flow


def latency(predictors: dict[str, Predictor], frames: Tensor, repeats: int, warmup: int,
            device: torch.device) -> dict[str, float]:
    """Median ms per frame of streaming ``frames`` (T×3×H×W, batch 1) through each predictor, interleaved."""

    def clip_fn(predictor: Predictor) -> Callable[[], None]:
        def run() -> None:
            predictor.reset()
            for t in range(frames.shape[0]):
                predictor.step(frames[t:t + 1])
        return run

    times, _ = time_stages({n: {"clip": clip_fn(p)} for n, p in predictors.items()}, repeats, warmup, device)
    return {n: statistics.median(times[n]["clip"]) / frames.shape[0] for n in predictors}


def results_markdown(results: dict, command: str) -> str:
    """The readable report of a comparison's results.json."""
    flow = results["flow"]
    lines = ["# Method comparison", "",
             f"Data: {results['data']}. Command: `{command}`.", "",
             (f"Temporal consistency with {flow['source']} ({flow['description']}): TC = mIoU of P_t and P_t+1 "
             f"warped back onto frame t (nearest neighbour), occlusion mask: {flow['mask_tc']}; tIoU = the same "
             f"over the pixels passing the {flow['mask_tiou']}. Latency: median of {results['repeats']} runs streaming "
             f"{results['time_frames']} frames at {results['resolution']}, batch 1, {results['threads']} threads "
             f"({results['env']['cpu']})."), "",
             "| method | mIoU (%) | TC (%) | tIoU (%) | ms / frame | |", "|---|---|---|---|---|---|"]
    for name, r in results["methods"].items():
        lines.append(f"| {name} | {pct(r['miou'])} | {pct(r['tc'])} | {pct(r['tiou'])} | {r['ms_per_frame']:.1f} | "
                     f"{r['description']} |")
    if results.get("train_seconds"):
        lines += ["", "Training: " + ", ".join(f"{k} {v:.0f} s" for k, v in results["train_seconds"].items())]
    return "\n".join(lines) + "\n"
