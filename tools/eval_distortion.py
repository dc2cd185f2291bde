"""Which distortion map is better? DAVSS's DMNet map vs EVSS's fine map, against the true mismatch.

    python -m tools.eval_distortion --dataset synthetic --davss RUN/davss/final.pth --davss-keyframe csrnet \
        --evss RUN/evss/final.pth --distances 1-9 --out runs/distortion
    python -m tools.eval_distortion --dataset camvid --data-root DIR \
        --davss DAVSS.pth --evss EVSS.pth --distances 1-5 --window 6 --out runs/distortion_camvid

For every window and keyframe distance d, each method's own plain-warping prediction is compared
with its keyframe network's prediction on the labelled frame; the pixels where they differ are the
true mismatch, and the method's map thresholded at ``--threshold`` is scored against it (precision,
recall, IoU, L1, and threshold-free the average precision and the best IoU over thresholds;
:mod:`engine.distortion`). Writes ``distortion.json`` and ``distortion.md`` into
``--out``; the last line printed is the JSON summary. The labelled frames expected and used are
printed and recorded (samples_expected, samples_used); a labelled frame whose frame or label file is
missing stops the run unless --allow-missing.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from dataset import sample_counts
from engine.atomic import atomic_write_json, atomic_write_text
from engine.config import ConfigError
from engine.distortion import evaluate_distortion
from engine.evaluate import parse_distances
from engine.evaluation_setup import DATASETS, build_eval_dataset, build_net, davss_align_corners, parse_key_values
from engine.report import pct
from model import build_evss, load_checkpoint
from model.errors import run_cli


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--dataset", choices=DATASETS, required=True)
    p.add_argument("--data-root", help="data root (not needed for synthetic)")
    p.add_argument("--list", dest="list_file", help="list file in the original's format")
    p.add_argument("--split", default="val")
    p.add_argument("--davss", help="DAVSS checkpoint")
    p.add_argument("--davss-keyframe", choices=("deeplabv3plus", "csrnet"), default="deeplabv3plus")
    p.add_argument("--align-corners", choices=("auto", "true", "false"), default="auto",
                   help="DAVSS resizes (auto: true for CamVid, else false)")
    p.add_argument("--evss", help="EVSS checkpoint")
    p.add_argument("--distances", default="1-9")
    p.add_argument("--window", type=int, default=10)
    p.add_argument("--threshold", type=float, default=0.5)
    p.add_argument("--missing", choices=("auto", "error", "skip"), default="auto")
    p.add_argument("--allow-missing", action="store_true",
                   help="leave out (with one warning) labelled frames whose frame or label file is missing")
    p.add_argument("--limit", type=int, help="only the first N windows")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--synthetic", action="append", default=[], metavar="KEY=VALUE",
                   help="extra argument of the synthetic data set (repeatable)")
    p.add_argument("--num-classes", type=int)
    p.add_argument("--out", default="runs/distortion")
    p.add_argument("--no-progress", action="store_true")
    return p


def markdown(results: dict, args: argparse.Namespace) -> str:
    """The readable report: per distance and method, the map's quality against the true mismatch."""
    lines = [f"# Distortion maps on {args.dataset} {args.split}", "",
             (f"{results['num_windows']} windows; truth = plain-warping prediction ≠ the keyframe network's own "
              f"prediction on the labelled frame; map ≥ {args.threshold} = predicted distorted. In %."), "",
             "| d | method | mismatch share | precision | recall | IoU | L1 | AP | best IoU (threshold) |",
             "|---|---|---|---|---|---|---|---|---|"]
    distances = sorted({int(d) for per in results["methods"].values() for d in per})
    for d in distances:
        for name, per in results["methods"].items():
            r = per[str(d)]
            lines.append(f"| {d} | {name} | {pct(r['mismatch_rate'])} | {pct(r['precision'])} | {pct(r['recall'])} | "
                         f"{pct(r['iou'])} | {r['l1']:.4f} | {pct(r['ap'])} | {pct(r['best_iou'])} "
                         f"({r['best_threshold']}) |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if not (args.davss or args.evss):
        raise ConfigError("give --davss and/or --evss checkpoints")
    distances = parse_distances(args.distances)
    if max(distances) >= args.window:
        raise ConfigError(f"--window {args.window} is too short for distance {max(distances)}")
    dataset = build_eval_dataset(args.dataset, args.split, args.data_root, args.list_file, args.window,
                                 args.missing, args.num_classes, parse_key_values(args.synthetic),
                                 allow_missing=args.allow_missing)
    num_classes = args.num_classes or dataset.num_classes
    nets = {}
    if args.evss:
        nets["EVSS fine map"] = build_evss(num_classes)
        load_checkpoint(nets["EVSS fine map"], args.evss)
    if args.davss:
        nets["DAVSS DMNet map"] = build_net("davss", num_classes, args.davss_keyframe,
                                            davss_align_corners(args.align_corners, args.dataset))
        load_checkpoint(nets["DAVSS DMNet map"], args.davss)
    for net in nets.values():
        net.to(args.device)
    counts = sample_counts(dataset).limited(args.limit)
    count = counts.used
    start = time.perf_counter()
    per_method = evaluate_distortion(nets, dataset, distances, args.device, indices=range(count),
                                     threshold=args.threshold, progress=not args.no_progress)
    results = {"dataset": args.dataset, "split": args.split, "num_windows": count, "threshold": args.threshold,
               "checkpoints": {"evss": args.evss, "davss": args.davss}, "seconds": time.perf_counter() - start,
               "methods": {n: {str(d): r for d, r in per.items()} for n, per in per_method.items()},
               **counts.as_json()}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(results, out / "distortion.json")
    atomic_write_text(markdown(results, args), out / "distortion.md")
    print(markdown(results, args))
    print(f"[distortion] {counts.summary()}")
    print(json.dumps({n: {d: r["iou"] for d, r in per.items()} for n, per in results["methods"].items()}))
    return results


if __name__ == "__main__":
    run_cli(main)
