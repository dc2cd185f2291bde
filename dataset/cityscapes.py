"""Cityscapes video, official layout.

::

    <root>/leftImg8bit_sequence/<split>/<city>/<city>_<seq>_<frame>_leftImg8bit.png
    <root>/gtFine/<split>/<city>/<city>_<seq>_<frame>_gtFine_labelTrainIds.png

Each 30-frame snippet is labelled on its frame 19. List lines are
``leftImg8bit_sequence/... gtFine/...`` relative to the root; the original's lists spell labels
``_gtFine_trainIds.png``, accepted too. Frames may be stored under any image extension: the one in
the list is preferred, else the file with that name and another extension is used.
"""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np

from .errors import MissingFileError
from .labels import CITYSCAPES_LABELS, CityscapesLabel, label_id_lut, label_ids_to_train_ids
from .lists import ListEntry, read_list
from .video import FrameIndex, LabelledFrame, labelled_frame

CITYSCAPES_OFFSETS = (-5, -4, -3, -2, -1, 2, 3, 4, 5)
"""The original's neighbour offsets (+1 is never used)."""

FRAME_PATTERN = re.compile(r"(?P<seq>[^_/]+_\d{6})_(?P<number>\d{6})_leftImg8bit")
LABEL_SUFFIX = "_gtFine_labelTrainIds.png"
ORIGINAL_LABEL_SUFFIX = "_gtFine_trainIds.png"
LABEL_IDS_SUFFIX = "_gtFine_labelIds.png"


def _relative(path: str | Path, root: Path) -> str:
    return Path(path).relative_to(root).as_posix()


def cityscapes_list(root: str | Path, split: str) -> list[ListEntry]:
    """Pair every ``gtFine/<split>/*/*_gtFine_labelTrainIds.png`` with its sequence frame.

    Raises:
        MissingFileError: if there are no such labels (with a hint when only ``labelIds`` exist)
            or a labelled frame is missing.
    """
    root = Path(root)
    label_dir = root / "gtFine" / split
    labels = sorted(label_dir.glob(f"*/*{LABEL_SUFFIX}"))
    if not labels:
        hint = (": only *_gtFine_labelIds.png found, convert them with tools/prepare_cityscapes.py"
                if any(label_dir.glob("*/*_gtFine_labelIds.png")) else "")
        raise MissingFileError(f"{label_dir}: no */*{LABEL_SUFFIX} labels{hint}")
    index = FrameIndex(FRAME_PATTERN, dense=True)
    entries = []
    for label in labels:
        frame = (root / "leftImg8bit_sequence" / split / label.parent.name
                 / label.name.replace(LABEL_SUFFIX, "_leftImg8bit.png"))
        located = index.locate(frame)
        if located is None:
            raise MissingFileError(f"{frame}: frame of {label} does not exist under any image extension")
        sequence, position = located
        entries.append(ListEntry(_relative(sequence.paths[position], root), _relative(label, root),
                                 str(label)))
    return entries


def _label_path(root: Path, listed: str) -> Path:
    """The listed label, or the same file under the other ``trainIds`` spelling if only that exists."""
    path = root / listed
    for old, new in ((ORIGINAL_LABEL_SUFFIX, LABEL_SUFFIX), (LABEL_SUFFIX, ORIGINAL_LABEL_SUFFIX)):
        if not path.is_file() and path.name.endswith(old):
            other = path.with_name(path.name[: -len(old)] + new)
            if other.is_file():
                return other
    return path


def cityscapes_frames(root: str | Path, split: str = "train",
                      list_file: str | Path | None = None) -> list[LabelledFrame]:
    """Labelled frames of a split, from ``list_file`` or by scanning the folders.

    Sample ids are ``<city>_<seq>_<frame>``.
    """
    root = Path(root)
    entries = read_list(list_file) if list_file is not None else cityscapes_list(root, split)
    index = FrameIndex(FRAME_PATTERN, dense=True,
                       prefer=Path(entries[0].frame).suffix)
    frames = []
    for entry in entries:
        frame = root / entry.frame
        sample_id = frame.stem.removesuffix("_leftImg8bit")
        frames.append(labelled_frame(entry, frame, _label_path(root, entry.label), index, sample_id))
    return frames


def label_id_table() -> tuple[np.ndarray, str]:
    """The labelId → trainId lookup table (255 = ignore) and where it came from: ``cityscapesscripts``'
    label table when it is installed, else the project's own (:data:`dataset.labels.CITYSCAPES_LABELS`;
    the tests check that the two agree)."""
    try:
        from cityscapesscripts.helpers.labels import labels  # optional: the official table
    except ImportError:
        return label_id_lut(CITYSCAPES_LABELS), "dataset.labels"
    table = tuple(CityscapesLabel(label.name, label.id, label.trainId if 0 <= label.trainId < 255 else 255)
                  for label in labels)
    return label_id_lut(table), "cityscapesscripts"


def convert_label_ids(path: Path, lut: np.ndarray, overwrite: bool = False) -> bool:
    """Write the ``*_gtFine_labelTrainIds.png`` of one ``*_gtFine_labelIds.png`` through ``lut``;
    returns False when it existed and was kept (``overwrite`` False)."""
    target = path.with_name(path.name[: -len(LABEL_IDS_SUFFIX)] + LABEL_SUFFIX)
    if target.exists() and not overwrite:
        return False
    label_ids = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if label_ids is None or label_ids.ndim != 2:
        raise MissingFileError(f"{path}: not a readable single-channel label image")
    if not cv2.imwrite(str(target), label_ids_to_train_ids(label_ids, lut, source=str(path))):
        raise OSError(f"{target}: could not be written")
    return True
