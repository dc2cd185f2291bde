"""Prepare a Cityscapes tree for the video data set.

1. Convert ``gtFine/<split>/*/*_gtFine_labelIds.png`` to ``*_gtFine_labelTrainIds.png`` (19 classes,
   255 = ignore) where the latter is missing, with the label table of ``cityscapesscripts`` when it
   is installed, else the project's own (``dataset/labels.py``; the two are tested to agree).
2. Write ``<list-dir>/<split>.txt`` in the original's list format, by scanning the folders.

    python -m tools.prepare_cityscapes --root DATA/cityscapes [--splits train val] [--list-dir DIR]
"""

from __future__ import annotations

import argparse
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from dataset.cityscapes import LABEL_IDS_SUFFIX, cityscapes_list, convert_label_ids, label_id_table
from dataset.lists import write_list
from model.errors import run_cli


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, required=True, help="Cityscapes root (gtFine/, leftImg8bit_sequence/)")
    parser.add_argument("--splits", nargs="+", default=["train", "val"])
    parser.add_argument("--list-dir", type=Path, help="where to write <split>.txt (default: --root)")
    parser.add_argument("--no-lists", action="store_true", help="only convert the labels")
    parser.add_argument("--overwrite", action="store_true", help="rewrite existing labelTrainIds files")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args(argv)

    lut, source = label_id_table()
    for split in args.splits:
        sources = sorted((args.root / "gtFine" / split).glob(f"*/*{LABEL_IDS_SUFFIX}"))
        with ThreadPoolExecutor(args.workers) as pool:
            written = sum(pool.map(lambda path: convert_label_ids(path, lut, args.overwrite), sources))
        print(f"{split}: {written} of {len(sources)} labelIds files converted (table: {source})")
        if not args.no_lists:
            list_path = (args.list_dir or args.root) / f"{split}.txt"
            print(f"{split}: {write_list(list_path, cityscapes_list(args.root, split))} lines -> {list_path}")


if __name__ == "__main__":
    run_cli(main)
