"""Compare video segmentation methods on the same clips: accuracy, temporal consistency, latency.

    python -m tools.compare                                   # synthetic set, trains what it needs
    python -m tools.compare --from-run runs/demo_final        # reuse a finished demo run's stages
    python -m tools.compare --dataset cityscapes --data-root DIR --checkpoint per_frame=CSRNET.pth \\
        --checkpoint etc=ETC.pth --checkpoint convlstm=RECURRENT.pth --checkpoint evss=EVSS.pth

Methods (the :data:`METHODS` registry; add an entry to compare another one)
  per_frame  the keyframe network (CSRNet) on every frame
  etc        the same network trained with ETC's temporal losses, on every frame
  convlstm   CSRNet + ConvLSTM, streaming with the recurrent state carried between frames
  evss_k5    EVSS, a keyframe every 5 frames (the others propagated and rectified)
  evss_k10   EVSS, a keyframe every 10 frames
  davss_k5   DAVSS with the CSRNet keyframe network, a keyframe every 5 frames (``--methods``; not
             in the default list: its two training stages take about 10 minutes on the synthetic set)
  davss_k10  DAVSS (CSRNet keyframe network), a keyframe every 10 frames

Every method runs as a stream over each evaluation clip from its first frame (synthetic: the whole
validation clip, every frame labelled; Cityscapes/CamVid: the window of ``--window`` frames ending at
each labelled frame). Reported per method: ``miou`` on the labelled frames it visits; ``tc``, the ETC
measure (mIoU between P_t and P_t+1 warped back by the flow t→t+1, nearest neighbour, no occlusion
mask) and ``tiou``, the same over the pixels passing the forward–backward check
(:class:`engine.metrics.TemporalConsistency`), with OpenCV DIS flow computed once per clip and shared
by every method; ``ms_per_frame``, the median over ``--repeats`` runs of streaming ``--time-frames``
frames at the evaluation resolution, batch 1 (``tools.benchmark.time_stages``: the methods take turns
in every repeat, so load changes hit them alike), divided by the number of frames — for EVSS the
amortised cost of keyframes and propagated frames.

On the synthetic set the checkpoints come from ``--checkpoint NAME=PATH``, then ``--from-run DIR``
(a demo run: ``csrnet``, ``flownet``, ``evss`` stages), then the run folder, and are trained there when
missing: the demo's three stages (configs/synthetic_*.yaml), then ``per_frame`` and ``etc`` as the
same fine-tuning of the stage-1 network for ``--iters`` iterations on consecutive-frame pairs without
and with ETC's motion loss (configs/synthetic_etc.yaml), so their difference is the loss alone, and
``convlstm`` (configs/synthetic_recurrent.yaml); ``davss`` as its two stages (configs/synthetic_davss_dmnet.yaml,
then configs/synthetic_davss.yaml, with their own iteration counts) on the demo's CSRNet and FlowNet. DAVSS
checkpoints (``--checkpoint davss=PATH``, e.g. a tools/train_davss run's final.pth) hold the whole net with
the CSRNet keyframe network and resize with ``align_corners=False``. The run folder gets results.json, results.md,
config.json and env.json; the last line printed is one JSON object keyed by method with ``miou``,
``tc``, ``tiou`` (fractions) and ``ms_per_frame``.
"""
from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

if __package__ in (None, ""):  # run as a script: python tools/compare.py
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from torch import Tensor  # noqa: E402

from engine.atomic import atomic_write_json, atomic_write_text  # noqa: E402
from engine.environment import collect_env  # noqa: E402
from engine.metrics import ConfusionMatrix, TemporalConsistency  # noqa: E402
from engine.report import pct  # noqa: E402

log = logging.getLogger("evss.compare")

DATASETS = ("synthetic", "cityscapes", "camvid")
DEFAULT_METHODS = ("per_frame", "etc", "convlstm", "evss_k5", "evss_k10")
DEMO_STAGES = ("csrnet", "flownet", "evss")


class Predictor(Protocol):
    """A streaming segmenter: ``reset()`` before a clip, ``step(frame 1×3×H×W) -> pred 1×H×W int64``."""

    def reset(self) -> None: ...

    def step(self, frame: Tensor) -> Tensor: ...


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


# ---------------------------------------------------------------------------------------------- predictors
class PerFrame:
    """A segmentation network run on every frame independently (CSRNet: logits on the 1/4 grid)."""

    def __init__(self, net: torch.nn.Module):
        self.net = net

    def reset(self) -> None:
        pass

    def step(self, frame: Tensor) -> Tensor:
        from model.blocks import upsample4
        from model.fusion import crop
        return crop(upsample4(self.net(frame)), tuple(frame.shape[-2:])).argmax(1)


class Recurrent:
    """:class:`model.recurrent.RecurrentStream`: the state is carried between the frames of a clip."""

    def __init__(self, net):
        self.stream = net.stream()

    def reset(self) -> None:
        self.stream.reset()

    def step(self, frame: Tensor) -> Tensor:
        return self.stream.step(frame)["pred"]


class KeyframeStream:
    """EVSS or DAVSS streaming with a keyframe every ``interval`` frames of a clip (frames 0, k, 2k, ...)."""

    def __init__(self, net, interval: int):
        self.net, self.interval = net, int(interval)
        self.reset()

    def reset(self) -> None:
        self.stream = self.net.stream()
        self.position = 0

    def step(self, frame: Tensor) -> Tensor:
        pred = self.stream.step(frame, keyframe=self.position % self.interval == 0)["pred"]
        self.position += 1
        return pred


def _csrnet(ctx: Context, name: str):
    from model import CSRNet, load_checkpoint
    net = CSRNet(ctx.num_classes).to(ctx.device)
    load_checkpoint(net, ctx.checkpoint(name))
    return net.eval()


def _recurrent(ctx: Context, name: str):
    from model import RecurrentCSRNet, load_checkpoint
    from model.checkpoint import read_state_dict
    state = read_state_dict(ctx.checkpoint(name))
    cell = "convgru" if "temporal.cell.candidate.weight" in state else "convlstm"
    hidden = state["temporal.proj.weight"].shape[1]
    kernel = state["temporal.cell.gates.weight"].shape[-1]
    net = RecurrentCSRNet(ctx.num_classes, cell=cell, hidden_channels=hidden, kernel_size=kernel).to(ctx.device)
    load_checkpoint(net, state)
    return net.eval()


def _evss(ctx: Context, name: str):
    from model import build_evss, load_checkpoint
    net = build_evss(ctx.num_classes).to(ctx.device)
    load_checkpoint(net, ctx.checkpoint(name))
    return net.eval()


def _davss(ctx: Context, name: str):
    from model import build_davss, load_checkpoint
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


# ---------------------------------------------------------------------------------------------- training
@dataclass
class SyntheticTrainer:
    """Trains the synthetic-set checkpoints into the run folder (each reused when its final.pth exists)."""

    out: Path
    threads: int
    iters: int
    overrides: dict[str, list[str]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    def demo_stage(self, stage: str) -> Path:
        from tools.demo import train_stages
        for name, seconds in train_stages(self.out, self.overrides, self.threads).items():
            self.seconds.setdefault(name, seconds)  # later calls find the stages trained (0 s)
        return self.out / stage / "final.pth"

    def finetune(self, name: str, config: str, extra: list[str], csrnet: Path, config_iters: bool = False) -> Path:
        """Train checkpoint ``name`` from ``config`` for ``--iters`` iterations (``config_iters``: the config's)."""
        from tools import train
        final = self.out / name / "final.pth"
        if final.is_file():
            print(f"[compare] {name}: reusing {final}", flush=True)
            return final
        budget = [] if config_iters else [f"train.iters={self.iters}"]
        args = [f"out_dir={self.out / name}", f"threads={self.threads}", *budget,
                "data.synthetic.val_clips=0"] + extra + self.overrides.get(name, [])
        how = "the config's iterations" if config_iters else f"{self.iters} iterations"
        print(f"[compare] training {name} ({config}, {how} from {csrnet})", flush=True)
        start = time.perf_counter()
        train.run(None, config, args)
        self.seconds[name] = round(time.perf_counter() - start, 1)
        print(f"[compare] {name} done in {self.seconds[name]} s", flush=True)
        return final

    def train(self, name: str, checkpoint: Callable[[str], Path]) -> Path:
        if name in DEMO_STAGES:
            return self.demo_stage(name)
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
        raise KeyError(f"no recipe trains checkpoint {name!r} on the synthetic set; pass --checkpoint {name}=PATH")


class Checkpoints:
    """Resolves checkpoint names: explicit paths, then a demo run, then the run folder / training."""

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
                raise FileNotFoundError(f"--from-run {self.from_run}: {path} does not exist (not a finished demo run?)")
        elif self.trainer is not None:
            path = self.trainer.train(name, self)
        if path is None:
            raise FileNotFoundError(f"checkpoint {name!r} is needed: pass --checkpoint {name}=PATH")
        self.paths[name] = path
        return path


# ---------------------------------------------------------------------------------------------- evaluation
def clips(args) -> torch.utils.data.Dataset:
    """Evaluation clips: dicts with ``frames`` T×3×H×W, ``label`` (the last frame's), optionally ``labels``."""
    if args.dataset == "synthetic":
        from dataset.synthetic import SyntheticVideoDataset
        return SyntheticVideoDataset(split=args.split, mode="eval", num_clips=args.clips, clip_len=args.clip_len,
                                     height=args.height, width=args.width, num_classes=args.num_classes,
                                     window=args.clip_len)
    from dataset import build_dataset
    if not args.data_root:
        raise SystemExit(f"--dataset {args.dataset} needs --data-root DIR")
    return build_dataset(args.dataset, args.data_root, args.split, "eval", length=args.window, missing="skip")


def clip_flows(frames: Tensor, estimator) -> list[tuple[Tensor, Tensor]]:
    """(flow_t→t+1, flow_t+1→t) for every consecutive pair of a clip (1×2×H×W each)."""
    return [(estimator(frames[t:t + 1], frames[t + 1:t + 2]), estimator(frames[t + 1:t + 2], frames[t:t + 1]))
            for t in range(frames.shape[0] - 1)]


@torch.no_grad()
def evaluate(predictors: dict[str, Predictor], dataset, num_classes: int, ignore_index: int, device: torch.device,
             limit: int | None = None) -> dict[str, dict]:
    """Stream every clip through every predictor; accuracy on labelled frames, temporal consistency."""
    from engine.flow_estimators import OpenCVFlow
    estimator = OpenCVFlow("dis")
    cms = {n: ConfusionMatrix(num_classes, ignore_index, device=device) for n in predictors}
    tcs = {n: TemporalConsistency(num_classes, flow_source=estimator.name) for n in predictors}
    count = len(dataset) if limit is None else min(limit, len(dataset))
    for i in range(count):
        sample = dataset[i]
        frames = sample["frames"].to(device)
        labels = sample.get("labels")
        flows = clip_flows(frames, estimator)
        for name, predictor in predictors.items():
            predictor.reset()
            previous = None
            for t in range(frames.shape[0]):
                pred = predictor.step(frames[t:t + 1])
                if labels is not None:
                    cms[name].update(pred[0], labels[t].to(device))
                elif t == frames.shape[0] - 1:
                    cms[name].update(pred[0], sample["label"].to(device))
                if previous is not None:
                    tcs[name].update(previous, pred, *flows[t - 1])
                previous = pred
        print(f"[compare] clip {i + 1}/{count}: " + ", ".join(f"{n} {100 * cms[n].miou():.1f}" for n in predictors),
              flush=True)
    out = {}
    for name in predictors:
        tc = tcs[name].compute()
        out[name] = {"miou": cms[name].miou(), "tc": tc["tc_etc"], "tiou": tc["tc_fb"],
                     "pixel_accuracy": cms[name].pixel_accuracy(), "num_pairs": tc["num_pairs"],
                     "in_frame_fraction": tc["in_frame_fraction"], "fb_valid_fraction": tc["fb_valid_fraction"]}
    out["_flow"] = {"source": estimator.name, "description": estimator.description,
                    "mask_tc": tc["mask_etc"], "mask_tiou": tc["mask_fb"]}
    return out


def latency(predictors: dict[str, Predictor], frames: Tensor, repeats: int, warmup: int,
            device: torch.device) -> dict[str, float]:
    """Median ms per frame of streaming ``frames`` (batch 1) through each predictor, interleaved."""
    from tools.benchmark import time_stages

    def clip_fn(predictor: Predictor) -> Callable[[], None]:
        def run() -> None:
            predictor.reset()
            for t in range(frames.shape[0]):
                predictor.step(frames[t:t + 1])
        return run

    times, _ = time_stages({n: {"clip": clip_fn(p)} for n, p in predictors.items()}, repeats, warmup, device)
    return {n: statistics.median(times[n]["clip"]) / frames.shape[0] for n in predictors}


def results_markdown(results: dict, command: str) -> str:
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


# ---------------------------------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--dataset", choices=DATASETS, default="synthetic")
    p.add_argument("--data-root", help="data root (Cityscapes / CamVid)")
    p.add_argument("--split", default="val", help="evaluation split (synthetic: val or test, disjoint scenes)")
    p.add_argument("--window", type=int, default=10, help="frames streamed per labelled frame (real data)")
    p.add_argument("--num-classes", type=int, help="default: 19 (11 for CamVid)")
    p.add_argument("--methods", default=",".join(DEFAULT_METHODS), help=f"comma-separated, from {sorted(METHODS)}")
    p.add_argument("--checkpoint", action="append", default=[], metavar="NAME=PATH",
                   help="a checkpoint by name: per_frame, etc, convlstm, evss, davss, davss_dmnet, csrnet, flownet "
                   "(repeatable)")
    p.add_argument("--from-run", type=Path, help="a finished demo run folder (csrnet/, flownet/, evss/ final.pth)")
    p.add_argument("--out", type=Path, default=Path("runs/compare"), help="run folder")
    p.add_argument("--iters", type=int, default=100, help="fine-tuning iterations of per_frame, etc, convlstm")
    p.add_argument("--train-override", action="append", default=[], metavar="NAME:key=value",
                   help="config override for one trained checkpoint, e.g. etc:etc.motion_weight=1")
    p.add_argument("--clips", type=int, default=12, help="synthetic validation clips")
    p.add_argument("--clip-len", type=int, default=20, help="frames per synthetic clip")
    p.add_argument("--height", type=int, default=96)
    p.add_argument("--width", type=int, default=192)
    p.add_argument("--limit", type=int, help="evaluate only the first N clips / windows")
    p.add_argument("--time-frames", type=int, default=10, help="frames per latency run")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--device", default="cpu")
    return p


def _pairs(items: list[str], sep: str, what: str) -> list[tuple[str, str]]:
    out = []
    for item in items:
        key, found, value = item.partition(sep)
        if not found or not key or not value:
            raise SystemExit(f"{what} {item!r} is not NAME{sep}VALUE")
        out.append((key, value))
    return out


def main(argv=None) -> dict:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    start = time.perf_counter()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    names = [n for n in args.methods.split(",") if n]
    unknown = [n for n in names if n not in METHODS]
    if unknown:
        raise SystemExit(f"unknown methods {unknown}; known: {sorted(METHODS)}")
    args.num_classes = args.num_classes or (11 if args.dataset == "camvid" else 19)
    given = {k: Path(v) for k, v in _pairs(args.checkpoint, "=", "--checkpoint")}
    overrides: dict[str, list[str]] = {}
    for key, value in _pairs(args.train_override, ":", "--train-override"):
        overrides.setdefault(key, []).append(value)
    trainer = None
    if args.dataset == "synthetic":
        trainer = SyntheticTrainer(args.out, args.threads, args.iters, overrides)
    ckpts = Checkpoints(given, args.from_run, trainer)
    ctx = Context(args.num_classes, device, ckpts)

    predictors = {n: METHODS[n].build(ctx) for n in names}
    dataset = clips(args)
    eval_start = time.perf_counter()
    scores = evaluate(predictors, dataset, args.num_classes, getattr(dataset, "ignore_index", 255), device, args.limit)
    eval_seconds = time.perf_counter() - eval_start
    timing_frames = dataset[0]["frames"][:args.time_frames].to(device)
    ms = latency(predictors, timing_frames, args.repeats, args.warmup, device)

    flow = scores.pop("_flow")
    methods = {n: {**scores[n], "ms_per_frame": ms[n], "description": METHODS[n].description,
                   "checkpoints": {c: str(ckpts(c)) for c in METHODS[n].checkpoints}} for n in names}
    size = tuple(timing_frames.shape[-2:])
    results = {
        "methods": methods, "flow": flow, "data": f"{args.dataset} {args.split}"
        f", {min(len(dataset), args.limit or len(dataset))} clips", "resolution": f"{size[0]}x{size[1]}",
        "time_frames": int(timing_frames.shape[0]), "repeats": args.repeats, "threads": torch.get_num_threads(),
        "train_seconds": trainer.seconds if trainer else {}, "eval_seconds": round(eval_seconds, 1),
        "wall_s": round(time.perf_counter() - start, 1), "env": collect_env(),
    }
    command = "python -m tools.compare " + " ".join(sys.argv[1:] if argv is None else argv)
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(results, args.out / "results.json")
    atomic_write_text(results_markdown(results, command.strip()), args.out / "results.md")
    atomic_write_json({k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}, args.out / "config.json")
    atomic_write_json(results["env"], args.out / "env.json")
    summary = {n: {k: methods[n][k] for k in ("miou", "tc", "tiou", "ms_per_frame")} for n in names}
    print(json.dumps(summary), flush=True)
    return summary


if __name__ == "__main__":
    main()
