"""Bar chart of ``tools/benchmark.py --json`` results: per variant, the keyframe, the non-keyframe step
by stage (FlowNet, warp, CoNet, fusion) and the amortised per-frame cost at k = 10.

    python -m tools.plot_benchmark runs/bench/compare_exact.json runs/bench/compare_fast.json \\
        --resolution 1024x2048 --out figure/speed_1024x2048.png

Each file contributes its variants (a variant already taken from an earlier file is skipped, so the
first file's ``original`` is the one shown) and its per-frame baselines (``lraspp_*``). Times come
from separate runs when several files are given; the title says which runs.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from engine.benchmark.plot import collect, default_title, plot
from model.errors import run_cli


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("json", nargs="+", type=Path, help="tools/benchmark.py --json files")
    p.add_argument("--resolution", default="1024x2048", help="HxW key of the results")
    p.add_argument("--out", type=Path, required=True, help="PNG to write")
    p.add_argument("--title", default=None)
    args = p.parse_args(argv)
    rows = collect(args.json, args.resolution)
    plot(rows, args.title or default_title(args.json, args.resolution), args.out)
    print(f"[plot] wrote {args.out}")
    return 0


if __name__ == "__main__":
    run_cli(main)
