"""Compare video segmentation methods on the same clips: accuracy, temporal consistency, latency.

    python -m tools.compare                                   # synthetic set, trains what it needs
    python -m tools.compare --from-run runs/demo_final        # reuse a finished demo run's stages
    python -m tools.compare --dataset cityscapes --data-root DIR --checkpoint per_frame=CSRNET.pth \\
        --checkpoint etc=ETC.pth --checkpoint convlstm=RECURRENT.pth --checkpoint evss=EVSS.pth

Methods (the registry ``engine.compare.METHODS``; add an entry to compare another one)
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
frames at the evaluation resolution, batch 1 (the methods take turns
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
``tc``, ``tiou`` (fractions) and ``ms_per_frame``. The labelled frames expected and evaluated are
printed and recorded in results.json (``samples_expected``, ``samples_used``); on real data a labelled
frame whose frame or label file is missing stops the run unless ``--allow-missing``.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import torch

from dataset import sample_counts
from engine.atomic import atomic_write_json, atomic_write_text
from engine.compare import (DATASETS, DEFAULT_METHODS, METHODS, Checkpoints, Context, SyntheticTrainer,
                            comparison_clips, evaluate_methods, latency, results_markdown)
from engine.config import ConfigError
from engine.environment import collect_env
from engine.stream_eval import StreamEvaluator
from model.errors import run_cli


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
    p.add_argument("--allow-missing", action="store_true",
                   help="real data: leave out (with one warning) labelled frames whose frame or label file is missing")
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
            raise ConfigError(f"{what} {item!r} is not NAME{sep}VALUE")
        out.append((key, value))
    return out


def _print_clip(i: int, count: int, evaluator: StreamEvaluator) -> None:
    print(f"[compare] clip {i + 1}/{count}: " + ", ".join(f"{n} {100 * cm.miou():.1f}" for n, cm in evaluator.cm.items()),
          flush=True)


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    start = time.perf_counter()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    names = [n for n in args.methods.split(",") if n]
    unknown = [n for n in names if n not in METHODS]
    if unknown:
        raise ConfigError(f"unknown methods {unknown}; known: {sorted(METHODS)}")
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
    dataset = comparison_clips(args.dataset, args.split, args.data_root, args.window, args.clips, args.clip_len,
                               args.height, args.width, args.num_classes, args.allow_missing)
    counts = sample_counts(dataset).limited(args.limit)
    eval_start = time.perf_counter()
    scores, flow = evaluate_methods(predictors, dataset, args.num_classes, getattr(dataset, "ignore_index", 255),
                                    device, args.limit, on_clip=_print_clip)
    eval_seconds = time.perf_counter() - eval_start
    timing_frames = dataset[0]["frames"][:args.time_frames].to(device)
    ms = latency(predictors, timing_frames, args.repeats, args.warmup, device)

    methods = {n: {**scores[n], "ms_per_frame": ms[n], "description": METHODS[n].description,
                   "checkpoints": {c: str(ckpts(c)) for c in METHODS[n].checkpoints}} for n in names}
    size = tuple(timing_frames.shape[-2:])
    results = {
        "methods": methods, "flow": flow, "data": f"{args.dataset} {args.split}"
        f", {min(len(dataset), args.limit or len(dataset))} clips", "resolution": f"{size[0]}x{size[1]}",
        "time_frames": int(timing_frames.shape[0]), "repeats": args.repeats, "threads": torch.get_num_threads(),
        "train_seconds": trainer.seconds if trainer else {}, "eval_seconds": round(eval_seconds, 1),
        "wall_s": round(time.perf_counter() - start, 1), "env": collect_env(), **counts.as_json(),
    }
    command = "python -m tools.compare " + " ".join(sys.argv[1:] if argv is None else argv)
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(results, args.out / "results.json")
    atomic_write_text(results_markdown(results, command.strip()), args.out / "results.md")
    atomic_write_json({k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}, args.out / "config.json")
    atomic_write_json(results["env"], args.out / "env.json")
    summary = {n: {k: methods[n][k] for k in ("miou", "tc", "tiou", "ms_per_frame")} for n in names}
    print(f"[compare] {counts.summary()}", flush=True)
    print(json.dumps(summary), flush=True)
    return summary


if __name__ == "__main__":
    run_cli(main)
