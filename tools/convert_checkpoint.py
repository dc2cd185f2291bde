"""Convert EVSS checkpoints between the released layout and this project's clean layout.

    python -m tools.convert_checkpoint released.pth clean.pth                  # released → clean
    python -m tools.convert_checkpoint clean.pth evss.pth --to released        # clean → released (full)
    python -m tools.convert_checkpoint clean.pth csrnet.pth --to released --layout csrnet

The clean layout is ``EVSS.state_dict()``: no ``module.`` prefixes, no duplicated ``resnet.*``
backbone, no unused ``img_mean``/``img_std`` buffers. The released layouts are those the original
code loads (full DDP checkpoint, CSRNet-only, FlowNet-only). Files are written atomically.
"""
from __future__ import annotations

import argparse

from engine.atomic import atomic_torch_save
from model.checkpoint import clean_to_released, read_state_dict
from model.errors import run_cli


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", help="checkpoint to read (any released or project layout)")
    parser.add_argument("target", help="file to write")
    parser.add_argument("--to", choices=("clean", "released"), default="clean")
    parser.add_argument("--layout", choices=("full", "csrnet", "flownet"), default="full",
                        help="released layout to write (with --to released)")
    args = parser.parse_args(argv)
    state = read_state_dict(args.source)
    if args.to == "released":
        state = clean_to_released(state, args.layout)
    atomic_torch_save(dict(state), args.target)
    print(f"wrote {args.target}: {len(state)} tensors ({args.to}{'/' + args.layout if args.to == 'released' else ''})")


if __name__ == "__main__":
    run_cli(main)
