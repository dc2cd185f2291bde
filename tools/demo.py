"""The main job: train all three EVSS stages on the embedded synthetic video, evaluate, report.

    python -m tools.demo [--out runs/demo] [--threads N] [STAGE:key=value ...]

A stage whose ``final.pth`` exists in the run folder is reused (:mod:`engine.demo` says what is
trained, evaluated and written). The last line printed is one JSON object with ``miou_keyframe``,
``miou_warp_d9``, ``miou_evss_d9``, ``gap_closed_d9``, ``wall_s`` and ``report``.
"""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import torch

from engine.demo import DEMO_STAGES, run_demo
from model.errors import run_cli


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/demo", help="run folder (stages already trained there are reused)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch threads")
    parser.add_argument("overrides", nargs="*", metavar="STAGE:key=value",
                        help="config override for one stage, e.g. evss:train.iters=300")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    overrides: dict[str, list[str]] = {}
    for item in args.overrides:
        stage, _, override = item.partition(":")
        if stage not in DEMO_STAGES or "=" not in override:
            parser.error(f"override {item!r} is not STAGE:key=value with STAGE in {DEMO_STAGES}")
        overrides.setdefault(stage, []).append(override)
    summary = run_demo(Path(args.out), args.threads, overrides)
    print(json.dumps(summary), flush=True)
    return summary


if __name__ == "__main__":
    run_cli(main)
