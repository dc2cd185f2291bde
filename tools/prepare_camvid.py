"""Prepare CamVid for the video data set.

``extract``: decode CamVid videos with OpenCV into the original's video layout,
``<root>/video_image/<seq>/<seq><video ext>_<6-digit frame>.png`` (frame = 0-based decode index),
by default only the frames that the training offsets and 10-frame evaluation windows of the labels
in ``<root>/11labels`` use (``--all-frames`` for every frame)::

    python -m tools.prepare_camvid extract --root DATA/camvid 0001TP.avi 0006R0.mxf 01TP_extract.avi=0001TP

(``VIDEO=SEQ`` names the sequence when the file's stem is not the sequence name.)

``lists``: write ``<list-dir>/<split>.txt`` in the original's format by scanning the folders, for
the video layout (splits train, val, test, trainval, all) or the SegNet layout (split folders)::

    python -m tools.prepare_camvid lists --root DATA/camvid --splits trainval test
"""

from __future__ import annotations

import argparse
from pathlib import Path

from dataset.camvid import (camvid_segnet_list, camvid_video_list, detect_layout, extract_video_frames,
                            needed_frames)
from dataset.errors import MissingFileError
from dataset.lists import write_list
from model.errors import run_cli


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    ext = commands.add_parser("extract", help="decode videos into video_image/")
    ext.add_argument("--root", type=Path, required=True, help="CamVid root (11labels/ inside)")
    ext.add_argument("videos", nargs="+", help="video files, each optionally VIDEO=SEQ")
    ext.add_argument("--all-frames", action="store_true", help="extract every frame")
    ext.add_argument("--before", type=int, default=9, help="frames kept before each label (window T-1)")
    ext.add_argument("--after", type=int, default=5, help="frames kept after each label (max offset)")
    lists = commands.add_parser("lists", help="write list files by scanning the folders")
    lists.add_argument("--root", type=Path, required=True)
    lists.add_argument("--splits", nargs="+", default=["trainval", "test"])
    lists.add_argument("--layout", choices=["video", "segnet"], help="default: detected")
    lists.add_argument("--list-dir", type=Path, help="where to write <split>.txt (default: --root)")
    args = parser.parse_args(argv)

    if args.command == "extract":
        for spec in args.videos:
            video, _, seq = spec.partition("=")
            video = Path(video)
            seq = seq or video.stem
            frames = None if args.all_frames else needed_frames(args.root / "11labels", seq, args.before, args.after)
            if frames is not None and not frames:
                raise MissingFileError(f"{args.root / '11labels'}: no labels of sequence {seq!r} ({video})")
            count = extract_video_frames(video, seq, args.root / "video_image" / seq, frames)
            print(f"{video}: {count} frames -> {args.root / 'video_image' / seq}")
        return
    for split in args.splits:
        layout = args.layout or detect_layout(args.root, split)
        entries = camvid_video_list(args.root, split) if layout == "video" else camvid_segnet_list(args.root, split)
        list_path = (args.list_dir or args.root) / f"{split}.txt"
        print(f"{split} ({layout} layout): {write_list(list_path, entries)} lines -> {list_path}")


if __name__ == "__main__":
    run_cli(main)
