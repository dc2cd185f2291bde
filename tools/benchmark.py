"""EVSS / DAVSS speed benchmark: keyframe, the parts of a non-keyframe step, amortised cost, memory, FLOPs.

    python -m tools.benchmark                                   # exact optimised path, 512x1024 and 1024x2048
    python -m tools.benchmark --variant original --resolutions 1024x2048 --json out.json
    python -m tools.benchmark --compare original exact          # interleaved, ratio + output difference
    python -m tools.benchmark --baseline lraspp                 # + torchvision LRASPP per frame, same run
    python -m tools.benchmark --fast-accuracy --weights FILE    # fast mode's mIoU change (synthetic val)
    python -m tools.benchmark --method davss --keyframe deeplabv3plus   # DAVSS as released
    python -m tools.benchmark --method davss,evss --variant original    # interleaved, DAVSS/EVSS ratios

The variants (``original``, ``exact``, ``exact-direct``, ``fast``, ``fast-fp32-products``, ``NAME@SCALE``)
are described in :mod:`engine.benchmark.variants`, the stages in :mod:`engine.benchmark.stages`, and the
JSON results in :mod:`engine.benchmark.suite`. Timings are milliseconds, medians over ``--repeats`` runs
after ``--warmup`` runs, the stages and runners taking turns inside each repeat. ``--malloc retain`` (the
default) lets glibc keep freed large tensors for the next frame (:func:`engine.malloc.retain_freed_memory`,
for the whole process, so every runner gets it); ``--malloc default`` keeps glibc's thresholds. The
reference weights (``--weights citys`` / ``camvid``) come from the original project's ``make_weights.py``
generator, given by ``--make-weights PATH`` or ``EVSS_MAKE_WEIGHTS``; by default they are used when it is
given and random weights otherwise.
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import torch

from engine.atomic import atomic_write_json
from engine.benchmark.accuracy import fast_accuracy
from engine.benchmark.report import print_table
from engine.benchmark.suite import BenchmarkSettings, run_benchmark
from engine.benchmark.variants import METHODS, VARIANTS, resolve_weights, variant_options
from engine.environment import collect_env
from engine.malloc import retain_freed_memory
from model.davss import KEYFRAME_NETWORKS
from model.errors import run_cli


def parse_resolution(text: str) -> tuple[int, int]:
    """``HxW`` → (H, W), both positive."""
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"resolution must be HxW, got {text!r}") from None
    if h <= 0 or w <= 0:
        raise argparse.ArgumentTypeError(f"resolution must be positive, got {text!r}")
    return h, w


def parse_variant(text: str) -> str:
    """An EVSS variant name: ``original`` or an optimised one (:func:`engine.benchmark.variants.variant_options`)."""
    if text != "original":
        try:
            variant_options(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
    return text


def parse_methods(text: str) -> list[str]:
    """``evss``, ``davss`` or both, comma-separated, in runner order."""
    methods = text.split(",")
    if any(m not in METHODS for m in methods) or len(set(methods)) != len(methods):
        raise argparse.ArgumentTypeError(f"methods must be distinct, from {METHODS}, comma-separated; got {text!r}")
    return methods


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--resolutions", type=lambda s: [parse_resolution(x) for x in s.split(",")],
                   default=[(512, 1024), (1024, 2048)], help="comma-separated HxW list")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's default)")
    p.add_argument("--ks", type=lambda s: [int(x) for x in s.split(",")], default=[1, 5, 10],
                   help="keyframe intervals for the amortised cost")
    p.add_argument("--method", type=parse_methods, default=["evss"],
                   help="evss, davss, or both comma-separated (interleaved; ratios first/second)")
    p.add_argument("--keyframe", choices=KEYFRAME_NETWORKS, default="csrnet", help="DAVSS's keyframe network")
    variants = f"{', '.join(VARIANTS)}, or an optimised one with @SCALE (e.g. fast@0.75)"
    p.add_argument("--variant", type=parse_variant, default="exact", help=f"EVSS's variant: {variants}")
    p.add_argument("--compare", nargs=2, type=parse_variant, metavar=("A", "B"),
                   help=f"two EVSS variants, interleaved: {variants}")
    p.add_argument("--baseline", choices=("lraspp",), default=None)
    p.add_argument("--device", default="cpu")
    p.add_argument("--num-classes", type=int, default=19)
    p.add_argument("--weights", default=None, help="EVSS: citys or camvid (the reference generator's, see "
                   "--make-weights), 'random', or a state-dict file (default: citys with --make-weights, else random); "
                   "DAVSS: random unless a file")
    p.add_argument("--make-weights", type=Path, default=os.environ.get("EVSS_MAKE_WEIGHTS") or None,
                   help="the reference weight generator make_weights.py (default: $EVSS_MAKE_WEIGHTS)")
    p.add_argument("--reference-timing", type=Path, default=None,
                   help="a timing JSON of the original code, recorded in the results as 'reference'")
    p.add_argument("--json", type=Path, default=None, help="write the results here")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    p.add_argument("--no-flops", action="store_true", help="skip the FLOP counting")
    p.add_argument("--fast-accuracy", action="store_true", help="only measure the fast mode's mIoU change")
    p.add_argument("--fast-variant", default="fast", type=parse_variant,
                   help="the optimised variant --fast-accuracy compares with exact (exact-direct: Winograd's effect; "
                   "fast@0.75: the fast mode on non-keyframes resized by 0.75)")
    p.add_argument("--accuracy-windows", type=int, default=200, help="at most this many validation windows")
    p.add_argument("--accuracy-distance", type=int, default=5)
    p.add_argument("--synthetic-kwargs", default='{"num_clips": 12, "clip_len": 20, "height": 96, "width": 192}',
                   help="JSON dict of SyntheticVideoDataset arguments (default: the demo's validation clips)")
    p.add_argument("--malloc", choices=("retain", "default"), default="retain",
                   help="retain: glibc keeps freed large tensors for reuse (engine.malloc; every variant in the "
                   "process gets it); default: glibc's own thresholds")
    args = p.parse_args(argv)
    if args.fast_variant in ("original", "exact"):
        p.error(f"--fast-variant compares an optimised variant with exact; got {args.fast_variant!r}")
    if args.compare and args.method != ["evss"]:
        p.error("--compare compares two EVSS variants; use --method davss,evss --variant V for DAVSS against EVSS")
    return args


def run(args: argparse.Namespace) -> int:
    """Measure as ``args`` say, print the table and write the JSON."""
    if args.threads is None:
        args.threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    malloc = retain_freed_memory() if args.malloc == "retain" else "glibc default"
    weights = resolve_weights(args.weights, args.make_weights)
    if args.fast_accuracy:
        res = fast_accuracy(weights, args.fast_variant, json.loads(args.synthetic_kwargs), args.accuracy_windows,
                            args.accuracy_distance, args.num_classes, torch.device(args.device))
        print(json.dumps(res, indent=1))
        if args.json:
            atomic_write_json({"environment": collect_env(), "fast_accuracy": res}, args.json)
        return 0
    settings = BenchmarkSettings(
        resolutions=args.resolutions, variants=list(args.compare) if args.compare else [args.variant],
        methods=args.method, keyframe=args.keyframe, weights=weights, make_weights=args.make_weights,
        reference_timing=args.reference_timing, baseline=args.baseline, batch=args.batch, repeats=args.repeats,
        warmup=args.warmup, threads=args.threads, ks=args.ks, device=args.device, num_classes=args.num_classes,
        memory=not args.no_memory, flops=not args.no_flops)
    results = run_benchmark(settings, malloc, progress=lambda line: print(line, flush=True))
    if args.json:
        atomic_write_json(results, args.json)
        print(f"[benchmark] wrote {args.json}")
    print_table(results, args.ks)
    return 0


def main(argv: list[str] | None = None) -> int:
    return run(parse_args(argv))


if __name__ == "__main__":
    run_cli(main)
