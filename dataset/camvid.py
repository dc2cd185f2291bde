"""CamVid (11 classes, 11 = void) in two layouts.

Video layout (the original's), every frame of each video extracted::

    <root>/video_image/<seq>/<seq>.<video ext>_<6-digit frame>.png
    <root>/11labels/<label name>.png

List lines: ``video_image/0001TP/0001TP.avi_001889.png 11labels/0001TP_008550.png``. The video frame
of a label is its frame number plus :data:`VIDEO_FRAME_SHIFT` (−6661 for 0001TP, 0 otherwise).
Neighbours are found by frame number.

SegNet release layout, labelled frames only::

    <root>/{train,val,test}/<seq>_<frame>.<ext>   <root>/{train,val,test}annot/<seq>_<frame>.png

List lines name ``<split>/<name> <split>annot/<name>`` (the upstream lists' ``/SegNet/CamVid/``
prefix is dropped: only the last two path components are used; the frame may be stored under
another image extension). Offset j means the j-th labelled frame of the same sequence in that
split folder, in frame-number order; the real frame gap goes with each sample. The first and last
labelled frames of a sequence lack some neighbours by construction: training in this layout skips
those (frame, offset) pairs by default (``build_dataset(..., missing=None)``), while evaluation
windows that run off a sequence are an error unless ``missing="skip"``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import cv2

from .errors import DatasetError, MissingFileError
from .files import IMAGE_EXTENSIONS
from .lists import ListEntry, read_list
from .video import FrameIndex, LabelledFrame, labelled_frame

Layout = Literal["video", "segnet"]

CAMVID_OFFSETS = (-5, -4, -3, -2, -1, 1, 2, 3, 4, 5)
"""The original's neighbour offsets."""

VIDEO_FRAME_SHIFT = {"0001TP": -6661}
"""Video frame number = label frame number + shift (sequences not listed: 0)."""

VIDEO_PATTERN = re.compile(r"(?P<seq>[^.]+)\.[^_]+_(?P<number>\d{6})")
"""Stem of an extracted video frame, e.g. ``0001TP.avi_000029``."""

NAME_PATTERN = re.compile(r"(?P<seq>.+)_[A-Za-z]*(?P<number>\d+)")
"""Stem of a label (and of a SegNet frame), e.g. ``0016E5_07959``, ``0006R0_f00930``."""

SPLITS = ("train", "val", "test", "trainval", "all")


def camvid_split(seq: str, number: int) -> str:
    """Standard split of a labelled frame (the SegNet release's): ``"test"`` for Seq05VD and for
    0001TP from frame 8550 on, ``"val"`` for 0016E5 frames 7959..8159, else ``"train"``."""
    if seq == "Seq05VD" or (seq == "0001TP" and number >= 8550):
        return "test"
    if seq == "0016E5" and 7959 <= number <= 8159:
        return "val"
    return "train"


def _in_split(seq: str, number: int, split: str) -> bool:
    part = camvid_split(seq, number)
    return split == "all" or part == split or (split == "trainval" and part != "test")


def _relative(path: str | Path, root: Path) -> str:
    return Path(path).relative_to(root).as_posix()


def detect_layout(root: str | Path, split: str) -> Layout:
    """``"video"`` if ``<root>/video_image`` exists, ``"segnet"`` if ``<root>/<split>annot`` does."""
    root = Path(root)
    if (root / "video_image").is_dir():
        return "video"
    if (root / f"{split}annot").is_dir():
        return "segnet"
    raise MissingFileError(f"{root}: neither video_image/ (video layout) nor {split}annot/ "
                           f"(SegNet layout) exists")


def camvid_video_list(root: str | Path, split: str = "trainval") -> list[ListEntry]:
    """Pair every ``11labels/*.png`` of ``split`` (one of :data:`SPLITS`) with its video frame."""
    if split not in SPLITS:
        raise DatasetError(f"CamVid video layout: split {split!r} is not one of {SPLITS}")
    root = Path(root)
    index = FrameIndex(VIDEO_PATTERN, dense=True)
    entries = []
    for label in sorted((root / "11labels").glob("*.png")):
        parsed = NAME_PATTERN.fullmatch(label.stem)
        if parsed is None or not _in_split(parsed["seq"], int(parsed["number"]), split):
            continue
        seq, number = parsed["seq"], int(parsed["number"]) + VIDEO_FRAME_SHIFT.get(parsed["seq"], 0)
        located = index.find(root / "video_image" / seq, seq, number)
        if located is None:
            raise MissingFileError(f"{root / 'video_image' / seq}: no frame {seq}.<ext>_{number:06d} "
                                   f"for label {label} (extract it with tools/prepare_camvid.py)")
        sequence, position = located
        entries.append(ListEntry(_relative(sequence.paths[position], root), _relative(label, root),
                                 str(label)))
    if not entries:
        raise MissingFileError(f"{root / '11labels'}: no labels of split {split!r}")
    return entries


def camvid_segnet_list(root: str | Path, split: str) -> list[ListEntry]:
    """Pair every frame of ``<root>/<split>/`` with ``<root>/<split>annot/<stem>.png``."""
    root = Path(root)
    frames = sorted(path for path in (root / split).glob("*")
                    if path.suffix.lower() in IMAGE_EXTENSIONS and NAME_PATTERN.fullmatch(path.stem))
    if not frames:
        raise MissingFileError(f"{root / split}: no frames named <seq>_<frame>.<image ext>")
    entries = []
    for frame in frames:
        label = root / f"{split}annot" / f"{frame.stem}.png"
        if not label.is_file():
            raise MissingFileError(f"{label}: label of {frame} does not exist")
        entries.append(ListEntry(_relative(frame, root), _relative(label, root), str(frame)))
    return entries


def camvid_frames(root: str | Path, split: str = "train", list_file: str | Path | None = None,
                  layout: Layout | None = None, max_gap: int | None = None) -> list[LabelledFrame]:
    """Labelled frames of a split, from ``list_file`` or by scanning the folders.

    Args:
        root: data root.
        split: video layout: one of :data:`SPLITS`; SegNet layout: the folder name.
        list_file: list to read instead of scanning.
        layout: ``"video"`` or ``"segnet"``; detected from the folders when None.
        max_gap: SegNet layout only: stored frames more than ``max_gap`` frame numbers apart
            belong to different runs (e.g. train 0016E5 jumps from 2400 to 4350), so no offset
            crosses the jump. None: one run per sequence.

    Sample ids are the label file's stem (e.g. ``0001TP_008550``).
    """
    root = Path(root)
    layout = layout or detect_layout(root, split)
    if layout == "video":
        entries = read_list(list_file) if list_file is not None else camvid_video_list(root, split)
        index = FrameIndex(VIDEO_PATTERN, dense=True,
                           prefer=Path(entries[0].frame).suffix)
        return [labelled_frame(entry, root / entry.frame, root / entry.label, index,
                               Path(entry.label).stem) for entry in entries]
    entries = read_list(list_file) if list_file is not None else camvid_segnet_list(root, split)
    index = FrameIndex(NAME_PATTERN, dense=False, max_gap=max_gap,
                       prefer=Path(entries[0].frame).suffix)
    frames = []
    for entry in entries:
        frame, label = (root.joinpath(*Path(path).parts[-2:]) for path in (entry.frame, entry.label))
        frames.append(labelled_frame(entry, frame, label, index, label.stem))
    return frames


def needed_frames(labels_dir: Path, seq: str, before: int, after: int) -> set[int]:
    """Video frame numbers within ``before`` frames before and ``after`` frames after each label of ``seq``."""
    frames: set[int] = set()
    for label in labels_dir.glob(f"{seq}_*.png"):
        match = NAME_PATTERN.fullmatch(label.stem)
        if match is not None and match["seq"] == seq:
            frame = int(match["number"]) + VIDEO_FRAME_SHIFT.get(seq, 0)
            frames.update(range(max(frame - before, 0), frame + after + 1))
    return frames


def extract_video_frames(video: Path, seq: str, out_dir: Path, frames: set[int] | None) -> int:
    """Decode ``video`` and write its frames ``frames`` (all when None) as
    ``out_dir/<seq><video ext>_<6-digit frame>.png`` (the original's video layout); returns how many."""
    capture = cv2.VideoCapture(str(video))
    if not capture.isOpened():
        raise MissingFileError(f"{video}: video cannot be opened")
    out_dir.mkdir(parents=True, exist_ok=True)
    last = max(frames) if frames is not None else None
    written, index = 0, 0
    while last is None or index <= last:
        if frames is None or index in frames:
            ok, image = capture.read()
            if ok:
                path = out_dir / f"{seq}{video.suffix}_{index:06d}.png"
                if not cv2.imwrite(str(path), image):
                    raise OSError(f"{path}: could not be written")
                written += 1
        else:
            ok = capture.grab()
        if not ok:
            break
        index += 1
    capture.release()
    if last is not None and index <= last:
        print(f"warning: {video} ends at frame {index - 1}, frames up to {last} were wanted")
    return written
