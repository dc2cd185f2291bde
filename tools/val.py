"""Evaluate EVSS or DAVSS per keyframe distance (and temporal consistency) on Cityscapes, CamVid or synthetic video.

    python -m tools.val --dataset camvid --data-root DIR --checkpoint FILE --out runs/val_camvid
    python -m tools.val --method davss --dataset cityscapes --data-root DIR --checkpoint DAVSS_FILE
    python -m tools.val --dataset cityscapes --data-root DIR --checkpoint FILE --distances original
    python -m tools.val --dataset synthetic --distances 1,5,9 --temporal --flow-source dis
    torchrun --nproc_per_node=N tools/val.py ...       (the windows are split over the processes)

For each labelled frame (the last of a window of --window frames) the keyframe sits d frames
before it; its features are warped along the consecutive flows and corrected at the labelled
frame (the original's protocol). The same run scores d = 0 (the keyframe network alone) and plain
warping without correction. Writes into --out: results.json, results.md (per distance and per
class), miou_vs_distance.png, config.json (the arguments) and env.json (the environment); with
--save-predictions also the class maps as PNGs (predictions/<d…|warp_d…|keyframe>/<id>.png).
A labelled frame whose frame or label file is missing stops the run unless --allow-missing; the
labelled frames expected and evaluated are printed and recorded (samples_expected, samples_used).
"""
from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import torch
import torch.distributed as dist

from dataset import sample_counts
from dataset.errors import DatasetError
from engine.atomic import atomic_write_json, atomic_write_text
from engine.config import ConfigError
from engine.environment import collect_env
from engine.evaluate import DEFAULT_DISTANCES, evaluate_distances, parse_distances
from engine.evaluation_setup import (DATASETS, DEFAULT_CLASSES, build_eval_dataset, build_net,
                                     class_names, davss_align_corners, parse_key_values, setup_distributed)
from engine.report import PredictionWriter, pct, plot_miou, results_markdown
from model import load_checkpoint
from model.errors import run_cli


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--dataset", choices=DATASETS, required=True)
    p.add_argument("--data-root", help="data root (not needed for synthetic)")
    p.add_argument("--list", dest="list_file", help="list file in the original's format (scanned when absent)")
    p.add_argument("--split", default="val", help="split to evaluate")
    p.add_argument("--method", choices=("evss", "davss"), default="evss", help="the method of the checkpoint")
    p.add_argument("--checkpoint", help="EVSS or DAVSS checkpoint (released or project); required except for synthetic")
    p.add_argument("--keyframe", choices=("deeplabv3plus", "csrnet"), default="deeplabv3plus",
                   help="DAVSS keyframe network (the released DeepLabv3+, or CSRNet as EVSS's)")
    p.add_argument("--align-corners", choices=("auto", "true", "false"), default="auto",
                   help="DAVSS resizes; auto: as the original's test_PDA.py (CamVid true, Cityscapes false), "
                        "false for synthetic")
    p.add_argument("--distances", default=",".join(map(str, DEFAULT_DISTANCES)),
                   help="keyframe distances: '1,3', '1-9' or 'original' (3,5,7,9)")
    p.add_argument("--window", type=int, default=10, help="frames per evaluation window (> max distance)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--out", default="runs/val", help="output folder")
    p.add_argument("--num-classes", type=int, help="number of classes (default: the data set's)")
    p.add_argument("--wf", type=float, default=None, help="coarse distortion-map weight (default: the model's, 0.2)")
    p.add_argument("--no-warp", action="store_true", help="skip the plain-warping baseline")
    p.add_argument("--temporal", action="store_true", help="also measure temporal consistency (TC and VC_n)")
    p.add_argument("--flow-source", choices=("model", "dis", "farneback"), default="dis",
                   help="flow used by the temporal measures")
    p.add_argument("--keyframe-interval", type=int, default=5, help="keyframe interval of EVSS streaming (temporal)")
    p.add_argument("--vc-n", type=int, default=8, help="window length of VC_n")
    p.add_argument("--no-fb", action="store_true", help="skip the forward-backward masked temporal IoU")
    p.add_argument("--missing", choices=("auto", "error", "skip"), default="auto",
                   help="labelled frames whose window runs off the sequence: error, or skip them; auto: "
                        "skip in the CamVid SegNet layout (its first labelled frames have no history), else error")
    p.add_argument("--allow-missing", action="store_true",
                   help="leave out (with one warning) labelled frames whose frame or label file is missing, "
                        "instead of stopping")
    p.add_argument("--limit", type=int, help="evaluate only the first N windows")
    p.add_argument("--workers", type=int, default=2, help="data loader worker processes")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--save-predictions", action="store_true", help="write every prediction as a PNG class map")
    p.add_argument("--seed", type=int, default=0, help="seed of the random weights when no checkpoint is given")
    p.add_argument("--synthetic", action="append", default=[], metavar="KEY=VALUE",
                   help="extra argument of the synthetic data set (repeatable), e.g. height=256")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    rank, world, device = setup_distributed(args.device)
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("--device cuda asked for, but CUDA is not available")
    distances = parse_distances(args.distances)
    if max(distances) >= args.window:
        raise ConfigError(f"--window {args.window} is too short for distance {max(distances)}")

    dataset = build_eval_dataset(args.dataset, args.split, args.data_root, args.list_file, args.window,
                                 args.missing, args.num_classes, parse_key_values(args.synthetic),
                                 allow_missing=args.allow_missing)
    num_classes = args.num_classes or getattr(dataset, "num_classes", None) or DEFAULT_CLASSES[args.dataset]
    ignore_index = getattr(dataset, "ignore_index", 11 if num_classes == 11 else 255)
    if len(dataset) == 0:
        raise DatasetError(f"the {args.dataset} {args.split} split has no evaluation windows "
                           f"({sample_counts(dataset).summary()})")

    align_corners = davss_align_corners(args.align_corners, args.dataset)
    net = build_net(args.method, num_classes, args.keyframe, align_corners)
    if args.checkpoint:
        load_checkpoint(net, args.checkpoint)
    elif args.dataset == "synthetic":
        torch.manual_seed(args.seed)
        net = build_net(args.method, num_classes, args.keyframe, align_corners)
        warnings.warn("no --checkpoint: evaluating randomly initialised weights (numbers are meaningless)")
        print("[val] WARNING: no --checkpoint given, the network has random weights", file=sys.stderr)
    else:
        raise ConfigError(f"--checkpoint is required for --dataset {args.dataset}")
    net.to(device).eval()

    out = Path(args.out)
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        config = dict(vars(args))
        config.update(distances=distances, num_classes=num_classes, ignore_index=ignore_index,
                      world_size=world, resolved_device=device, argv=sys.argv if argv is None else list(argv))
        atomic_write_json(config, out / "config.json")
        atomic_write_json(collect_env(), out / "env.json")
    hook = PredictionWriter(out / "predictions") if args.save_predictions else None
    names = class_names(dataset, num_classes)
    results = evaluate_distances(
        net, dataset, distances, device, num_classes, ignore_index, wf=args.wf, progress=not args.no_progress,
        plain_warp=not args.no_warp, temporal=args.temporal, flow_source=args.flow_source,
        keyframe_interval=args.keyframe_interval, vc_n=args.vc_n, fb_check=not args.no_fb, limit=args.limit,
        num_workers=args.workers, on_prediction=hook, class_names=names)
    counts = sample_counts(dataset).limited(args.limit)
    results.update(dataset=args.dataset, split=args.split, checkpoint=args.checkpoint, window=args.window,
                   method=args.method.upper(), **counts.as_json())
    if args.method == "davss":
        results.update(keyframe=args.keyframe, align_corners=net.align_corners)
    if rank == 0:
        title = (f"{args.method.upper()} on {args.dataset} {args.split}"
                 + (f" ({Path(args.checkpoint).name})" if args.checkpoint else " (random weights)"))
        atomic_write_json(results, out / "results.json")
        atomic_write_text(results_markdown(results, title), out / "results.md")
        plot_miou(results, out / "miou_vs_distance.png", title)
        summary = ", ".join(f"d={k}: {pct(v)}" for k, v in results["miou"].items())
        print(f"[val] {counts.summary()}")
        print(f"[val] {results['num_samples']} windows; mIoU (%) keyframe {pct(results['miou_keyframe'])}; "
              f"{summary}")
        if results.get("temporal"):
            t = results["temporal"]
            for name in ("evss", "keyframe"):
                print(f"[val] temporal {name}: TC_etc {pct(t[name]['tc_etc'])} (mask: {t['mask_etc']}), "
                      f"TC_fb {pct(t[name]['tc_fb'])} (mask: forward-backward), VC_{t[name]['vc_n']} "
                      f"{pct(t[name]['vc'])}; flow {t['flow_source']}")
        print(f"[val] wrote {out / 'results.json'}")
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return results


if __name__ == "__main__":
    run_cli(main)
