"""Prepare a Cityscapes tree for the video data set.

1. Convert ``gtFine/<split>/*/*_gtFine_labelIds.png`` to ``*_gtFine_labelTrainIds.png`` (19 classes,
   255 = ignore) where the latter is missing, with the label table of ``cityscapesscripts`` when it
   is installed, else the project's own (``dataset/labels.py``; the two are tested to agree).
2. Write ``<list-dir>/<split>.txt`` in the original's list format, by scanning the folders.

    python tools/prepare_cityscapes.py --root DATA/cityscapes [--splits train val] [--list-dir DIR]
"""

from __future__ import annotations

import argparse
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dataset.cityscapes import LABEL_SUFFIX, cityscapes_list  # noqa: E402
from dataset.errors import MissingFileError  # noqa: E402
from dataset.labels import CITYSCAPES_LABELS, CityscapesLabel, label_id_lut, label_ids_to_train_ids  # noqa: E402
from dataset.lists import write_list  # noqa: E402

LABEL_IDS_SUFFIX = "_gtFine_labelIds.png"


def lookup_table() -> tuple[np.ndarray, str]:
    """labelId → trainId table and where it came from (``cityscapesscripts`` or ``dataset.labels``)."""
    try:
        from cityscapesscripts.helpers.labels import labels
    except ImportError:
        return label_id_lut(CITYSCAPES_LABELS), "dataset.labels"
    table = tuple(CityscapesLabel(label.name, label.id, label.trainId if 0 <= label.trainId < 255 else 255)
                  for label in labels)
    return label_id_lut(table), "cityscapesscripts"


def convert(path: Path, lut: np.ndarray, overwrite: bool) -> bool:
    """Write the labelTrainIds file of one labelIds file; False if it existed and was kept."""
    target = path.with_name(path.name[: -len(LABEL_IDS_SUFFIX)] + LABEL_SUFFIX)
    if target.exists() and not overwrite:
        return False
    label_ids = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if label_ids is None or label_ids.ndim != 2:
        raise MissingFileError(f"{path}: not a readable single-channel label image")
    if not cv2.imwrite(str(target), label_ids_to_train_ids(label_ids, lut, source=str(path))):
        raise OSError(f"{target}: could not be written")
    return True


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, required=True, help="Cityscapes root (gtFine/, leftImg8bit_sequence/)")
    parser.add_argument("--splits", nargs="+", default=["train", "val"])
    parser.add_argument("--list-dir", type=Path, help="where to write <split>.txt (default: --root)")
    parser.add_argument("--no-lists", action="store_true", help="only convert the labels")
    parser.add_argument("--overwrite", action="store_true", help="rewrite existing labelTrainIds files")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args(argv)

    lut, source = lookup_table()
    for split in args.splits:
        sources = sorted((args.root / "gtFine" / split).glob(f"*/*{LABEL_IDS_SUFFIX}"))
        with ThreadPoolExecutor(args.workers) as pool:
            written = sum(pool.map(lambda path: convert(path, lut, args.overwrite), sources))
        print(f"{split}: {written} of {len(sources)} labelIds files converted (table: {source})")
        if not args.no_lists:
            list_path = (args.list_dir or args.root) / f"{split}.txt"
            print(f"{split}: {write_list(list_path, cityscapes_list(args.root, split))} lines -> {list_path}")


if __name__ == "__main__":
    main()
