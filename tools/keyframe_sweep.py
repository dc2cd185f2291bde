"""Sweep keyframe schedules (fixed, adaptive, budget) and the hindsight oracle over whole videos.

    python -m tools.keyframe_sweep --method evss --dataset camvid --data-root DIR --split val \\
        --checkpoint EVSS.pth --json runs/sweep/evss_camvid.json
    python -m tools.keyframe_sweep --method davss --keyframe csrnet --dataset camvid --data-root DIR \\
        --checkpoint DAVSS.pth --signal above0.5 --json runs/sweep/davss_camvid.json
    python -m tools.keyframe_sweep --dataset synthetic --split test --random-weights --clips 2 \\
        --clip-len 8 --height 32 --width 64 --horizon 6 --ks 1,2,3 --json /tmp/sweep.json   # a smoke test

Each clip is streamed once from every frame as a keyframe, --horizon frames on (the propagation
table, engine/keyframes/table.py); every schedule is then replayed on the tables exactly as
net.stream(schedule=...) would run it. Reported per schedule: mIoU (%) over every labelled frame, TC
(%, ETC's measure with OpenCV DIS flow), the keyframe fraction and ms per frame priced with the
measured median step times. Adaptive thresholds are matched by bisection to each fixed k's keyframe
fraction; the oracle is the best schedule with hindsight for as many keyframes. Writes the JSON and a
two-panel PNG (--plot, default next to the JSON).
"""
from __future__ import annotations

import argparse
import shlex
import sys
from dataclasses import replace
from datetime import datetime, timezone
from fractions import Fraction
from pathlib import Path

import torch

from engine.atomic import atomic_write_json
from engine.config import ConfigError
from engine.environment import collect_env
from engine.evaluation_setup import build_net, davss_align_corners
from engine.flow_estimators import make_flow_estimator
from engine.keyframes import (DEFAULT_BUDGETS, DEFAULT_KS, build_tables, camvid_clips, plot_sweep, run_sweep,
                              synthetic_clips)
from model import load_checkpoint
from model.errors import run_cli
from model.schedule import SIGNALS


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--method", choices=("evss", "davss"), default="evss",
                   help="the method of the checkpoint (%(default)s)")
    p.add_argument("--dataset", choices=("synthetic", "camvid"), required=True)
    p.add_argument("--data-root", help="CamVid root in the SegNet layout (not for synthetic)")
    p.add_argument("--split", default="val", help="split (synthetic: val or test)")
    p.add_argument("--checkpoint", help="EVSS or DAVSS checkpoint (required except with --random-weights)")
    p.add_argument("--random-weights", action="store_true", help="synthetic only: a random-weight net (tests)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    p.add_argument("--keyframe", choices=("deeplabv3plus", "csrnet"), default="deeplabv3plus",
                   help="DAVSS keyframe network")
    p.add_argument("--align-corners", choices=("auto", "true", "false"), default="auto",
                   help="DAVSS resizes (auto: true for CamVid)")
    p.add_argument("--wf", type=float, help="EVSS coarse distortion-map weight (default: the model's)")
    p.add_argument("--json", required=True, type=Path, help="output JSON")
    p.add_argument("--plot", type=Path, help="output PNG (default: the JSON's name with .png)")
    p.add_argument("--horizon", type=int, default=48,
                   help="longest propagation run from a keyframe, in frames; the budget 1/10 can wait "
                        "2·slack/0.1 = 40 frames (%(default)s)")
    p.add_argument("--signal", choices=tuple(SIGNALS), default="mean",
                   help="distortion statistic of adaptive/budget (%(default)s)")
    p.add_argument("--ks", default=",".join(map(str, DEFAULT_KS)),
                   help="fixed intervals, comma-separated (%(default)s)")
    p.add_argument("--budgets", default=",".join(str(Fraction(b).limit_denominator(1000)) for b in DEFAULT_BUDGETS),
                   help="budget keyframe fractions, e.g. 0.2 or 1/5 (%(default)s)")
    p.add_argument("--clips", type=int, help="use only the first N clips (synthetic: how many to render, default 12)")
    p.add_argument("--max-gap", type=int, help="camvid: a new clip where stored frames are more than N frame "
                   "numbers apart (default: one clip per run of stored frames)")
    p.add_argument("--clip-len", type=int, default=20, help="synthetic: frames per clip (%(default)s)")
    p.add_argument("--height", type=int, default=96, help="synthetic: frame height (%(default)s)")
    p.add_argument("--width", type=int, default=192, help="synthetic: frame width (%(default)s)")
    p.add_argument("--num-classes", type=int, help="default: 19 (synthetic), 11 (camvid)")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def _numbers(text: str, option: str, integer: bool, low: float, high: float, open_low: bool = False) -> list:
    """Comma-separated numbers (fractions like 1/3 allowed) within [low, high] (``open_low``: (low, high]);
    a ConfigError naming ``option`` otherwise."""
    kind = "integers" if integer else "numbers"
    try:
        values = [Fraction(item) for item in text.split(",") if item.strip()]
    except (ValueError, ZeroDivisionError):
        values = []
    if not values or (integer and any(v.denominator != 1 for v in values)):
        raise ConfigError(f"{option}: expected comma-separated {kind}, got {text!r}")
    if any(v > high or v < low or (open_low and v == low) for v in values):
        raise ConfigError(f"{option}: every value must lie in {'(' if open_low else '['}{low:g}, {high:g}], "
                          f"got {text!r}")
    return [int(v) if integer else float(v) for v in values]


def check_args(args: argparse.Namespace) -> None:
    """Refuse inconsistent options before any work (ConfigError naming the option)."""
    if args.horizon < 2:
        raise ConfigError(f"--horizon must be >= 2 (a keyframe and one propagated frame), got {args.horizon}")
    if args.clips is not None and args.clips < 1:
        raise ConfigError(f"--clips must be >= 1, got {args.clips}")
    if args.dataset == "camvid":
        if not args.data_root:
            raise ConfigError("--dataset camvid needs --data-root DIR")
        if args.random_weights:
            raise ConfigError("--random-weights is for synthetic smoke tests; give --checkpoint for camvid")
        if args.num_classes not in (None, 11):
            raise ConfigError(f"--num-classes: CamVid has 11 classes, got {args.num_classes}")
    if args.checkpoint and args.random_weights:
        raise ConfigError("give either --checkpoint or --random-weights, not both")
    if not args.checkpoint and not args.random_weights:
        raise ConfigError(f"--checkpoint is required for --dataset {args.dataset}"
                          + (" (or --random-weights for a smoke test)" if args.dataset == "synthetic" else ""))
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--device {args.device}: CUDA is not available")


def main(argv: list[str] | None = None) -> dict:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    check_args(args)
    ks = _numbers(args.ks, "--ks", True, 1, args.horizon)
    budgets = _numbers(args.budgets, "--budgets", False, 0, 1, open_low=True)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.dataset == "camvid":
        clips = camvid_clips(args.data_root, args.split, args.max_gap)
        clips = replace(clips, clips=clips.clips[:args.clips]) if args.clips else clips
    else:
        clips = synthetic_clips(args.split, args.clips or 12, args.clip_len, args.height, args.width,
                                args.num_classes or 19)

    align_corners = davss_align_corners(args.align_corners, args.dataset)
    if args.random_weights:
        torch.manual_seed(args.seed)
        print("[keyframe_sweep] WARNING: random weights (--random-weights): the numbers are meaningless",
              file=sys.stderr)
    net = build_net(args.method, clips.num_classes, args.keyframe, align_corners)
    if args.checkpoint:
        load_checkpoint(net, args.checkpoint)
    net.to(args.device).eval()

    estimator = make_flow_estimator("dis")
    tables = build_tables(net, clips, args.horizon, args.device, estimator, args.wf, not args.no_progress)
    results = run_sweep(tables, ks, budgets, args.signal)
    env = collect_env()
    flow = {"source": estimator.name, "description": estimator.description,
            "tc": "mIoU of P_t and P_t+1 warped back onto frame t along the flow t→t+1 (nearest neighbour), "
                  "out-of-frame pixels excluded, no occlusion mask"}
    results.update(
        settings={"method": args.method, "dataset": args.dataset, "data_root": args.data_root, "split": args.split,
                  "checkpoint": args.checkpoint, "random_weights": args.random_weights, "horizon": args.horizon,
                  "signal": args.signal, "ks": ks, "budgets": budgets, "num_classes": clips.num_classes,
                  "ignore_index": clips.ignore_index, "device": args.device, "threads": torch.get_num_threads(),
                  "wf": args.wf, "keyframe": args.keyframe if args.method == "davss" else None,
                  "align_corners": align_corners if args.method == "davss" else None,
                  "adaptive": {"max_interval": args.horizon, "min_interval": 1}},
        data=clips.description, clips=len(tables), clip_ids=[t.clip_id for t in tables],
        frames=sum(t.num_frames for t in tables), labelled_frames=int(sum(t.labelled.sum() for t in tables)),
        image_size=list(tables[0].size), flow=flow,
        env=env, git_revision=env["git_revision"], date=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        command="python -m tools.keyframe_sweep " + shlex.join(argv))
    plot = args.plot or args.json.with_suffix(".png")
    atomic_write_json(results, args.json)
    plot_sweep(results, plot, f"{args.method.upper()} on {clips.description}")
    for row in results["summary"]["at_fixed"]:
        print(f"[keyframe_sweep] k={row['k']} fraction {row['keyframe_fraction']:.3f}: mIoU fixed "
              f"{_pct(row['miou_fixed'])}, adaptive {_pct(row['miou_adaptive'])}, oracle {_pct(row['miou_oracle'])}; "
              f"keyframes saved {_pct(row['keyframe_saving_pct'])} %")
    for row in results["budget"]:
        if "error" in row:
            print(f"[keyframe_sweep] WARNING: budget {row['target']:g} not scored: {row['error']}", file=sys.stderr)
    print(f"[keyframe_sweep] wrote {args.json} and {plot}")
    return results


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


if __name__ == "__main__":
    run_cli(main)
