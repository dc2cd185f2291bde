"""Evaluate optical-flow estimators: EPE on the MPI-Sintel sample and warping error on CamVid val.

    python -m tools.eval_flow [dis] [farneback] [zero] [dis-fast] [--flownet CKPT[=NAME] ...] \
        --sintel DIR --camvid DIR [--split val] [--limit N] [--out DIR] [--threads 1]

Every estimator is called as ``estimator(current, previous)`` (backward flow current→previous):
* Sintel (``sintel_sample``, 436×1024): current = frame 2, previous = frame 3, compared with the
  ground-truth forward flow 2→3; EPE over all valid and over non-occluded pixels.
* CamVid (``camvid_segnet/<split>``, consecutive 15 Hz frames): previous frame warped onto the
  current one; mean |RGB difference| in [0, 1] and PSNR over all pixels, and the mean |difference|
  on the pixels kept by the forward–backward consistency mask of the estimator itself ("own") and
  of OpenCV DIS ("DIS mask", the same pixels for everyone).
``--flownet`` takes a stage-1b ``final.pth`` (or a FlowNet-only / full EVSS checkpoint).

Writes ``OUT/flow_eval.json`` and ``OUT/flow_eval.md`` and prints the table; the last line printed
is a JSON summary.  Lower is better for every column except PSNR.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import cv2
import torch

from engine.atomic import atomic_write_json, atomic_write_text
from engine.config import ConfigError
from engine.environment import collect_env
from engine.flow_eval import build_estimator, camvid_pairs, camvid_warping_error, load_sintel_sample, sintel_epe
from model.errors import run_cli

BUILTIN = ("dis", "dis-fast", "dis-ultrafast", "farneback", "zero")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("estimators", nargs="*", help=f"built-in estimators: {', '.join(BUILTIN)}")
    p.add_argument("--flownet", action="append", default=[], metavar="CKPT[=NAME]",
                   help="a FlowNetS checkpoint to evaluate (repeatable)")
    p.add_argument("--sintel", default=os.environ.get("SINTEL", ""),
                   help="MPI-Sintel sample folder (alley_2 clean pair with its .flo; default: $SINTEL; '' skips)")
    p.add_argument("--camvid", default=os.environ.get("CAMVID", ""),
                   help="CamVid root in the SegNet layout (default: $CAMVID; '' skips)")
    p.add_argument("--split", default="val", help="CamVid split folder whose consecutive frames are used")
    p.add_argument("--limit", type=int, default=None, help="only the first N CamVid pairs")
    p.add_argument("--out", default="runs/flow_eval", help="output folder")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (and OpenCV's); default: torch's")
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    for name in args.estimators:
        if name not in BUILTIN:
            p.error(f"unknown estimator {name!r} (built-in: {', '.join(BUILTIN)}; networks: --flownet CKPT)")
    if not args.estimators and not args.flownet:
        args.estimators = ["dis", "farneback", "zero"]
    if not args.sintel and not args.camvid:
        p.error("no data: give --sintel DIR and/or --camvid DIR (or set SINTEL / CAMVID)")
    return args


def _fmt(v, digits=3, pct=False) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    return f"{100 * v:.1f}%" if pct else f"{v:.{digits}f}"


def markdown_table(result: dict) -> str:
    sintel = result.get("sintel", {}).get("estimators", {})
    camvid = result.get("camvid", {}).get("estimators", {})
    lines = [("| estimator | Sintel EPE all (px) | Sintel EPE noc (px) | CamVid L1 all | CamVid PSNR all (dB) "
              "| CamVid L1 noc (own mask, kept) | CamVid L1 noc (DIS mask) | ms / flow (CamVid) |"),
             "|---|---|---|---|---|---|---|---|"]
    for name in result["order"]:
        s, c = sintel.get(name, {}), camvid.get(name, {})
        own = f"{_fmt(c.get('l1_noc_own'), 4)} ({_fmt(c.get('kept_own'), pct=True)})" if c else "–"
        lines.append(f"| {name} | {_fmt(s.get('epe_all'))} | {_fmt(s.get('epe_noc'))} | {_fmt(c.get('l1_all'), 4)} "
                     f"| {_fmt(c.get('psnr_all'), 2)} | {own} | {_fmt(c.get('l1_noc_ref'), 4)} "
                     f"| {_fmt(c.get('ms_per_flow'), 0)} |")
    notes = []
    if sintel:
        notes.append(f"Sintel: {result['sintel']['path']} (alley_2 clean, 436×1024), estimate = "
                     "estimator(current=frame 2, previous=frame 3) vs ground-truth forward flow 2→3; "
                     f"{result['sintel']['pixels_all']} valid / {result['sintel']['pixels_noc']} non-occluded pixels.")
    if camvid:
        cv = result["camvid"]
        notes.append(f"CamVid: {cv['path']}, {cv['pairs']} consecutive pairs ({cv['first_pair'][0]} … "
                     f"{cv['last_pair'][1]}), previous frame warped onto the current one; L1 = mean |RGB "
                     "difference| in [0, 1]; noc = pixels passing the forward–backward consistency test "
                     f"(α={cv['alpha']}, β={cv['beta']}) of the estimator's own flows (fraction kept in "
                     f"brackets) or of {cv['reference_mask']}'s flows (the same pixels for every row).")
    return "\n".join(lines) + ("\n\n" + "\n\n".join(notes) if notes else "") + "\n"


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
        cv2.setNumThreads(args.threads)
    specs = list(args.estimators) + [f"flownet:{s}" for s in args.flownet]
    estimators = [build_estimator(s, args.device) for s in specs]
    names = [e.name for e in estimators]
    if len(set(names)) != len(names):
        raise ConfigError(f"estimator names must be unique, got {names} (name checkpoints with CKPT=NAME)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result: dict = {"order": names, "specs": specs,
                    "descriptions": {e.name: e.description for e in estimators},
                    "threads": torch.get_num_threads(), "device": args.device}
    start = time.perf_counter()
    if args.sintel:
        sample = load_sintel_sample(args.sintel)
        per = {}
        for e in estimators:
            per[e.name] = sintel_epe(e, sample)
            print(f"[eval_flow] sintel {e.name}: EPE all {per[e.name]['epe_all']:.3f}, "
                  f"noc {per[e.name]['epe_noc']:.3f}", file=sys.stderr, flush=True)
        first = next(iter(per.values()))
        result["sintel"] = {"path": args.sintel, "pixels_all": first["pixels_all"],
                            "pixels_noc": first["pixels_noc"], "estimators": per}
    if args.camvid:
        pairs = camvid_pairs(args.camvid, args.split)
        if args.limit:
            pairs = pairs[:args.limit]
        cv = camvid_warping_error(estimators, pairs, progress=sys.stderr.isatty())
        cv["path"] = str(Path(args.camvid) / args.split)
        result["camvid"] = cv
    result["wall_s"] = round(time.perf_counter() - start, 1)
    result["env"] = collect_env()
    table = markdown_table(result)
    atomic_write_json(result, out / "flow_eval.json")
    atomic_write_text(table, out / "flow_eval.md")
    print(table)
    print(json.dumps({"flow_eval": str(out / "flow_eval.json"), "table": str(out / "flow_eval.md"),
                      "wall_s": result["wall_s"]}))
    return result


if __name__ == "__main__":
    run_cli(main)
