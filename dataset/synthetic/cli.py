"""Command line of the synthetic data set: ``python -m dataset.synthetic --out DIR --layout ...``
writes clips in a real data set's layout, ``--preview FILE.png`` saves a preview figure.

Clips must be long enough for the layout's labelled frames (:data:`dataset.synthetic.export.MIN_FRAMES`:
20 for Cityscapes, label on frame 19, and CamVid, labels on frames 9 and 19; 1 for SegNet and the
preview); a shorter ``--frames`` is refused up front with one line."""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path

from .export import MIN_FRAMES, write_camvid_layout, write_cityscapes_layout, write_segnet_layout
from .preview import save_preview
from .splits import SPLIT_CODES


def main(argv: Sequence[str] | None = None) -> None:
    """Parse ``argv`` (default: the process arguments), write the layouts and/or the preview."""
    parser = argparse.ArgumentParser(
        prog="python -m dataset.synthetic",
        description="Write synthetic driving clips in a real data set's layout and/or save a preview figure.")
    parser.add_argument("--out", help="root folder of the layout to write")
    parser.add_argument("--layout", choices=("cityscapes", "camvid", "segnet"), default="cityscapes")
    parser.add_argument("--split", action="append", choices=sorted(SPLIT_CODES),
                        help="split(s) to write (repeatable; default train and val)")
    parser.add_argument("--num-clips", type=int, default=4, help="clips per split")
    parser.add_argument("--frames", type=int, default=None,
                        help="frames per clip (default: 30 Cityscapes/CamVid, 20 SegNet, 10 preview; at least 20 "
                             "for Cityscapes (label on frame 19) and CamVid (labels on frames 9 and 19), 1 for "
                             "SegNet and the preview)")
    parser.add_argument("--height", type=int, default=None, help="default 128 (Cityscapes, preview), 96 (CamVid)")
    parser.add_argument("--width", type=int, default=None, help="default 256 (Cityscapes, preview), 128 (CamVid)")
    parser.add_argument("--seed", type=int, default=0, help="base seed (layouts) / clip seed (preview)")
    parser.add_argument("--ext", default="png", help="SegNet layout frame extension (png or jpg)")
    parser.add_argument("--preview", help="save a preview figure of one clip to this PNG file")
    parser.add_argument("--classes", type=int, choices=(19, 11), default=19, help="preview label set")
    args = parser.parse_args(argv)
    if not args.out and not args.preview:
        parser.error("give --out DIR (with --layout) and/or --preview FILE.png")
    if args.out and args.frames is not None and args.frames < MIN_FRAMES[args.layout]:
        parser.error(f"--frames {args.frames} is too short for the {args.layout} layout: it needs at least "
                     f"{MIN_FRAMES[args.layout]} frames per clip")
    if args.frames is not None and args.frames < 1:
        parser.error(f"--frames must be at least 1, got {args.frames}")
    for name in ("height", "width"):
        if getattr(args, name) is not None and getattr(args, name) < 8:
            parser.error(f"--{name} must be at least 8, got {getattr(args, name)}")
    if args.out:
        cs = args.layout == "cityscapes"
        h = args.height or (128 if cs else 96)
        w = args.width or (256 if cs else 128)
        for split in args.split or ["train", "val"]:
            start = time.perf_counter()
            if args.layout == "cityscapes":
                entries = write_cityscapes_layout(args.out, split, args.num_clips, h, w, args.seed, args.frames or 30)
            elif args.layout == "camvid":
                entries = write_camvid_layout(args.out, split, args.num_clips, h, w, args.seed, args.frames or 30)
            else:
                entries = write_segnet_layout(args.out, split, args.num_clips, h, w, args.seed, args.frames or 20,
                                              ext=args.ext)
            print(f"{args.layout} {split}: {args.num_clips} clips, {len(entries)} labelled frames at {h}x{w} "
                  f"in {time.perf_counter() - start:.1f} s -> {Path(args.out) / (split + '.txt')}")
    if args.preview:
        stats = save_preview(args.preview, args.seed, args.frames or 10, args.height or 128, args.width or 256,
                             args.classes)
        print(f"preview -> {args.preview}: rendered in {stats['seconds']:.2f} s, median flow "
              f"{stats['flow_p50']:.2f} px, p99 {stats['flow_p99']:.2f} px, occluded {100 * stats['occluded']:.1f}%")
