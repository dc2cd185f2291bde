"""Cityscapes video, official layout.

::

    <root>/leftImg8bit_sequence/<split>/<city>/<city>_<seq>_<frame>_leftImg8bit.png
    <root>/gtFine/<split>/<city>/<city>_<seq>_<frame>_gtFine_labelTrainIds.png

Each 30-frame snippet is labelled on its frame 19. List lines are
``leftImg8bit_sequence/... gtFine/...`` relative to the root; the original's lists spell labels
``_gtFine_trainIds.png``, accepted too. Frames may be stored under any image extension: the one in
the list is preferred, else the file with that name and another extension is used.

A scanned tree is checked like a list: a label whose frame is missing, a frame with ``gtFine``
files (``_labelIds.png``, ``_color.png``, ``_instanceIds.png``, ``_polygons.json``) but no
``_labelTrainIds.png``, and a snippet (a run of sequence frames, see :data:`SNIPPET_FRAMES`)
without any ``gtFine`` file are each a :class:`MissingFileError`, or with ``allow_missing`` left out
with one warning and counted as dropped.
"""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np

from model.errors import WriteError

from .errors import MissingFileError
from .files import imread
from .labels import CITYSCAPES_LABELS, CityscapesLabel, label_id_lut, label_ids_to_train_ids
from .lists import ListEntry, read_list
from .video import Dropped, FrameIndex, LabelledFrames, collect_frames, drop_missing

CITYSCAPES_OFFSETS = (-5, -4, -3, -2, -1, 2, 3, 4, 5)
"""The original's neighbour offsets (+1 is never used)."""

FRAME_PATTERN = re.compile(r"(?P<seq>[^_/]+_\d{6})_(?P<number>\d{6})_leftImg8bit")
LABEL_SUFFIX = "_gtFine_labelTrainIds.png"
ORIGINAL_LABEL_SUFFIX = "_gtFine_trainIds.png"
LABEL_IDS_SUFFIX = "_gtFine_labelIds.png"
GTFINE_PATTERN = re.compile(r"(?P<seq>[^_/]+_\d{6})_(?P<number>\d{6})_gtFine_(?P<kind>.+)")
"""Name of any ``gtFine`` file of a frame: ``<city>_<seq>_<frame>_gtFine_<kind>``."""
SNIPPET_FRAMES = 30
"""Frames per sequence snippet; stored frames further apart than this belong to different snippets."""
OTHER_GTFINE_KINDS = ("labelIds.png", "color.png", "instanceIds.png", "polygons.json")
"""``gtFine`` files other than the trainIds label: a frame with one of them is meant to be labelled."""


def _relative(path: str | Path, root: Path) -> str:
    return Path(path).relative_to(root).as_posix()


def _snippets(numbers: tuple[int, ...]) -> list[tuple[int, int]]:
    """(first, last) frame number of each snippet in sorted ``numbers``: stored frames more than
    :data:`SNIPPET_FRAMES` apart belong to different snippets (a few missing frames do not split one)."""
    cuts = [i for i in range(1, len(numbers)) if numbers[i] - numbers[i - 1] > SNIPPET_FRAMES]
    return [(numbers[a], numbers[b - 1]) for a, b in zip([0] + cuts, cuts + [len(numbers)], strict=True)]


def scan_cityscapes(root: str | Path, split: str) -> tuple[list[ListEntry], list[Dropped]]:
    """Pair every ``gtFine/<split>/*/*_gtFine_labelTrainIds.png`` with its sequence frame, and list
    the labelled frames that lack a file (see the module docstring) as :class:`Dropped` samples.

    Raises:
        MissingFileError: if there are no such labels at all (with a hint when ``labelIds`` exist).
    """
    root = Path(root)
    label_dir = root / "gtFine" / split
    labels: list[Path] = []
    others: dict[tuple[str, str], Path] = {}          # (city, sample id) -> a gtFine file of that frame
    labelled: dict[str, set[int]] = {}                 # <city>_<seq> -> frame numbers with any gtFine file
    for path in sorted(label_dir.glob("*/*_gtFine_*")):
        match = GTFINE_PATTERN.fullmatch(path.name)
        if match is None or match["kind"] not in ("labelTrainIds.png",) + OTHER_GTFINE_KINDS:
            continue
        labelled.setdefault(match["seq"], set()).add(int(match["number"]))
        key = (path.parent.name, path.name[: path.name.index("_gtFine_")])
        if match["kind"] == "labelTrainIds.png":
            labels.append(path)
        elif match["kind"] == "labelIds.png" or key not in others:   # name the labelIds file when there is one
            others[key] = path
    if not labels:
        hint = (": only *_gtFine_labelIds.png found, convert them with tools/prepare_cityscapes.py"
                if any(path.name.endswith(LABEL_IDS_SUFFIX) for path in others.values()) else "")
        raise MissingFileError(f"{label_dir}: no */*{LABEL_SUFFIX} labels{hint}")
    index = FrameIndex(FRAME_PATTERN, dense=True)
    entries, problems = [], []
    for label in labels:
        sample_id = label.name[: -len(LABEL_SUFFIX)]
        others.pop((label.parent.name, sample_id), None)
        frame = root / "leftImg8bit_sequence" / split / label.parent.name / f"{sample_id}_leftImg8bit.png"
        located = index.locate(frame)
        if located is None:
            problems.append(Dropped(sample_id, "frame missing",
                                    f"{frame}: frame of {label} does not exist under any image extension"))
            continue
        sequence, position = located
        entries.append(ListEntry(_relative(sequence.paths[position], root), _relative(label, root), str(label)))
    for (city, sample_id), path in sorted(others.items()):
        label = label_dir / city / f"{sample_id}{LABEL_SUFFIX}"
        fix = ("convert it with tools/prepare_cityscapes.py" if path.name.endswith(LABEL_IDS_SUFFIX)
               else "restore it, or write its _labelIds.png and run tools/prepare_cityscapes.py")
        problems.append(Dropped(sample_id, "label missing", f"{label}: label does not exist, but {path.name} "
                                                            f"does: {fix}"))
    frame_dir = root / "leftImg8bit_sequence" / split
    for city in sorted(p for p in frame_dir.iterdir() if p.is_dir()) if frame_dir.is_dir() else ():
        for seq, runs in sorted(index.sequences(city).items()):
            numbers = labelled.get(seq, set())   # a label whose frame is missing still marks its snippet
            for first, last in _snippets(tuple(sorted(numbers.union(runs[0].numbers)))):
                if not any(first <= number <= last for number in numbers):
                    problems.append(Dropped(
                        f"{seq}_{first:06d}", "snippet without a label",
                        f"{city / seq}_{first:06d}.._{last:06d}_leftImg8bit: a snippet of frames "
                        f"{first}..{last} without any gtFine file in {label_dir / city.name}: add its "
                        f"{LABEL_SUFFIX} or remove the snippet"))
    return entries, problems


def cityscapes_list(root: str | Path, split: str) -> list[ListEntry]:
    """The list of a scanned split (:func:`scan_cityscapes`), every labelled frame complete.

    Raises:
        MissingFileError: if there are no labels, or a labelled frame lacks its frame or label.
    """
    entries, problems = scan_cityscapes(root, split)
    drop_missing(problems, False, f"{Path(root) / 'gtFine' / split}")
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


def cityscapes_frames(root: str | Path, split: str = "train", list_file: str | Path | None = None,
                      allow_missing: bool = False) -> LabelledFrames:
    """Labelled frames of a split, from ``list_file`` or by scanning the folders (:func:`scan_cityscapes`).

    Sample ids are ``<city>_<seq>_<frame>``. A labelled frame whose frame or label is missing is a
    :class:`MissingFileError`; with ``allow_missing`` such frames are left out with one warning and
    returned as :attr:`LabelledFrames.dropped`.
    """
    root = Path(root)
    if list_file is not None:
        entries, problems, where = read_list(list_file), [], str(list_file)
    else:
        (entries, problems), where = scan_cityscapes(root, split), str(root / "gtFine" / split)
    index = FrameIndex(FRAME_PATTERN, dense=True, prefer=Path(entries[0].frame).suffix if entries else ".png")
    items = ((entry, root / entry.frame, _label_path(root, entry.label),
              Path(entry.frame).stem.removesuffix("_leftImg8bit")) for entry in entries)
    return collect_frames(items, index, problems, allow_missing, where)


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
    label_ids = imread(path, cv2.IMREAD_UNCHANGED)
    if label_ids.ndim != 2:
        raise MissingFileError(f"{path}: not a single-channel label image")
    if not cv2.imwrite(str(target), label_ids_to_train_ids(label_ids, lut, source=str(path))):
        raise WriteError(f"{target}: could not be written")
    return True
