"""Time the warp op on CPU against F.grid_sample, side by side in one process.

    python -m tools.bench_warp [--channels 128 --height 256 --width 512 --runs 10 --threads N]

Both compute the same bilinear warp with border clamping (grid_sample with padding_mode='border',
align_corners=True on normalised coordinates; it agrees with the op to ~1e-6 relative but not bit
for bit).  Reported: median over `--runs` timed runs after one warm-up each (the candidates take turns, so
load changes on the machine hit all alike; :func:`engine.benchmark.timing.time_stages`), for
* warp: the compiled op (model.warp.warp, whatever backend is active; see the header line),
* grid_sample: F.grid_sample alone, grid precomputed,
* grid_sample+grid: building the normalised grid from the flow plus F.grid_sample (what a
  grid_sample-based warp has to do per call),
* warp_pytorch (with --fallback): the exact pure-PyTorch fallback, timed after the others on at most
  3 runs.
"""

from __future__ import annotations

import argparse
import statistics

import torch
import torch.nn.functional as F

from engine.benchmark.timing import time_stages
from model.warp import warp, warp_backend, warp_pytorch
from model.errors import run_cli


def _grid(flow: torch.Tensor) -> torch.Tensor:
    _, _, h, w = flow.shape
    xs = torch.arange(w, dtype=flow.dtype).view(1, 1, w)
    ys = torch.arange(h, dtype=flow.dtype).view(1, h, 1)
    gx = (xs + flow[:, 0]) * (2.0 / (w - 1)) - 1.0
    gy = (ys + flow[:, 1]) * (2.0 / (h - 1)) - 1.0
    return torch.stack((gx, gy), dim=-1)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--channels", type=int, default=128)
    ap.add_argument("--height", type=int, default=256)
    ap.add_argument("--width", type=int, default=512)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    ap.add_argument("--fallback", action="store_true", help="also time the pure-PyTorch fallback (slow)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    gen = torch.Generator().manual_seed(0)
    b, c, h, w = args.batch, args.channels, args.height, args.width
    feats = torch.randn(b, c, h, w, generator=gen)
    flow = torch.randn(b, 2, h, w, generator=gen) * 3.0  # a few pixels, some pointing outside
    grid = _grid(flow)

    with torch.no_grad():
        out_warp = warp(feats, flow)
        out_gs = F.grid_sample(feats, grid, mode="bilinear", padding_mode="border", align_corners=True)
        rel = ((out_warp - out_gs).abs().max() / out_warp.abs().max()).item()
        fns = {
            "warp": lambda: warp(feats, flow),
            "grid_sample": lambda: F.grid_sample(feats, grid, mode="bilinear", padding_mode="border",
                                                 align_corners=True),
            "grid_sample+grid": lambda: F.grid_sample(feats, _grid(flow), mode="bilinear",
                                                      padding_mode="border", align_corners=True),
        }
        cpu = torch.device("cpu")
        times, _ = time_stages({name: {"warp": fn} for name, fn in fns.items()}, args.runs, 1, cpu)
        if args.fallback:
            fallback = {"warp_pytorch": {"warp": lambda: warp_pytorch(feats, flow)}}
            times.update(time_stages(fallback, max(1, min(args.runs, 3)), 1, cpu)[0])
        results = {name: (statistics.median(t["warp"]), t["warp"]) for name, t in times.items()}  # ms

    print(f"warp backend: {warp_backend()}; torch {torch.__version__}; threads {torch.get_num_threads()}; "
          f"features {b}x{c}x{h}x{w} float32, flow {b}x2x{h}x{w}")
    print(f"max |warp - grid_sample| / max |warp| = {rel:.2e}")
    base = results["warp"][0]
    for name, (med, times) in results.items():
        print(f"{name:>17}: median {med:8.2f} ms over {len(times)} runs "
              f"({med / base:5.2f}x warp)   [{', '.join(f'{t:.1f}' for t in times)}]")


if __name__ == "__main__":
    run_cli(main)
