"""Loader throughput: decoded frames per second (decode + checks + edge label + transforms +
collation) through a DataLoader, at full resolution.

    python -m tools.bench_loader --root DATA/camvid_segnet [--split val] [--workers 0 2]

Training pairs (2 frames, label, edge; random flip) and evaluation windows (T frames, label) are
measured separately (:func:`engine.benchmark.loader.loader_throughput`). Windows decode every frame
again for each labelled frame (a T-fold re-read of a densely labelled clip), as the evaluation
protocol does.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from dataset import build_dataset, train_transform
from engine.benchmark.loader import loader_throughput
from model.errors import run_cli

__all__ = ["main"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="camvid", help="name for dataset.build_dataset")
    parser.add_argument("--root", type=Path, required=True, help="data root of --dataset")
    parser.add_argument("--split", default="val")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--length", type=int, default=10, help="evaluation window length")
    parser.add_argument("--max-samples", type=int, default=200, help="per measurement")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the main process")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    train = build_dataset(args.dataset, args.root, args.split, "train")
    train.transform = train_transform(None, ignore_index=train.ignore_index)
    windows = build_dataset(args.dataset, args.root, args.split, "eval", length=args.length, missing="skip")
    for name, dataset in (("train pairs", train), (f"eval windows T={args.length}", windows)):
        height, width = dataset[0]["frames"].shape[-2:]
        for workers in args.workers:
            result = loader_throughput(dataset, workers, max_samples=args.max_samples)
            print(f"{name:>20} {height}x{width} workers={workers}: {result['frames_per_s']:7.1f} frames/s "
                  f"({result['samples_per_s']:.1f} samples/s, {result['samples']} samples "
                  f"in {result['seconds']:.2f} s)")


if __name__ == "__main__":
    run_cli(main)
