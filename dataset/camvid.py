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

Scanned folders are checked like a list: a label whose frame is missing (both layouts) and a SegNet
frame without its label are each a :class:`MissingFileError`, or with ``allow_missing`` left out with
one warning and counted as dropped.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import cv2

from model.errors import WriteError

from .errors import DatasetError, MissingFileError
from .files import IMAGE_EXTENSIONS
from .lists import ListEntry, read_list
from .video import Dropped, FrameIndex, LabelledFrames, collect_frames, drop_missing

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


def scan_camvid_video(root: str | Path, split: str = "trainval") -> tuple[list[ListEntry], list[Dropped]]:
    """Pair every ``11labels/*.png`` of ``split`` (one of :data:`SPLITS`) with its video frame; the
    labels whose frame is missing come back as :class:`Dropped` samples.

    Raises:
        DatasetError: for an unknown split.
        MissingFileError: if the split has no labels at all.
    """
    if split not in SPLITS:
        raise DatasetError(f"CamVid video layout: split {split!r} is not one of {SPLITS}")
    root = Path(root)
    index = FrameIndex(VIDEO_PATTERN, dense=True)
    entries, problems = [], []
    for label in sorted((root / "11labels").glob("*.png")):
        parsed = NAME_PATTERN.fullmatch(label.stem)
        if parsed is None or not _in_split(parsed["seq"], int(parsed["number"]), split):
            continue
        seq, number = parsed["seq"], int(parsed["number"]) + VIDEO_FRAME_SHIFT.get(parsed["seq"], 0)
        located = index.find(root / "video_image" / seq, seq, number)
        if located is None:
            problems.append(Dropped(label.stem, "frame missing",
                                    f"{root / 'video_image' / seq}: no frame {seq}.<ext>_{number:06d} for label "
                                    f"{label} (extract it with tools/prepare_camvid.py)"))
            continue
        sequence, position = located
        entries.append(ListEntry(_relative(sequence.paths[position], root), _relative(label, root), str(label)))
    if not entries and not problems:
        raise MissingFileError(f"{root / '11labels'}: no labels of split {split!r}")
    return entries, problems


def scan_camvid_segnet(root: str | Path, split: str) -> tuple[list[ListEntry], list[Dropped]]:
    """Pair every frame of ``<root>/<split>/`` with ``<root>/<split>annot/<stem>.png``; frames without
    their label and labels without their frame come back as :class:`Dropped` samples.

    Raises:
        MissingFileError: if ``<root>/<split>/`` holds no frames.
    """
    root = Path(root)
    frames = sorted(path for path in (root / split).glob("*")
                    if path.suffix.lower() in IMAGE_EXTENSIONS and NAME_PATTERN.fullmatch(path.stem))
    if not frames:
        raise MissingFileError(f"{root / split}: no frames named <seq>_<frame>.<image ext>")
    entries, problems = [], []
    for frame in frames:
        label = root / f"{split}annot" / f"{frame.stem}.png"
        if label.is_file():
            entries.append(ListEntry(_relative(frame, root), _relative(label, root), str(frame)))
        else:
            problems.append(Dropped(frame.stem, "label missing", f"{label}: label of {frame} does not exist"))
    stems = {frame.stem for frame in frames}
    for label in sorted((root / f"{split}annot").glob("*.png")):
        if label.stem not in stems and NAME_PATTERN.fullmatch(label.stem):
            problems.append(Dropped(label.stem, "frame missing", f"{root / split / label.stem}.<image ext>: frame "
                                                                 f"of {label} does not exist under any image extension"))
    return entries, problems


def camvid_video_list(root: str | Path, split: str = "trainval") -> list[ListEntry]:
    """The list of a scanned video-layout split (:func:`scan_camvid_video`), every label's frame present.

    Raises:
        MissingFileError: if the split has no labels or a label's frame is missing.
    """
    entries, problems = scan_camvid_video(root, split)
    drop_missing(problems, False, f"{Path(root) / '11labels'} ({split})")
    return entries


def camvid_segnet_list(root: str | Path, split: str) -> list[ListEntry]:
    """The list of a scanned SegNet-layout split (:func:`scan_camvid_segnet`), every pair complete.

    Raises:
        MissingFileError: if there are no frames, a frame lacks its label or a label its frame.
    """
    entries, problems = scan_camvid_segnet(root, split)
    drop_missing(problems, False, f"{Path(root) / split}")
    return entries


def camvid_frames(root: str | Path, split: str = "train", list_file: str | Path | None = None,
                  layout: Layout | None = None, max_gap: int | None = None,
                  allow_missing: bool = False) -> LabelledFrames:
    """Labelled frames of a split, from ``list_file`` or by scanning the folders.

    Args:
        root: data root.
        split: video layout: one of :data:`SPLITS`; SegNet layout: the folder name.
        list_file: list to read instead of scanning.
        layout: ``"video"`` or ``"segnet"``; detected from the folders when None.
        max_gap: SegNet layout only: stored frames more than ``max_gap`` frame numbers apart
            belong to different runs (e.g. train 0016E5 jumps from 2400 to 4350), so no offset
            crosses the jump. None: one run per sequence.
        allow_missing: leave out, with one warning, the labelled frames whose frame or label is
            missing (returned as :attr:`LabelledFrames.dropped`) instead of raising
            :class:`MissingFileError`.

    Sample ids are the label file's stem (e.g. ``0001TP_008550``).
    """
    root = Path(root)
    layout = layout or detect_layout(root, split)
    scan = scan_camvid_video if layout == "video" else scan_camvid_segnet
    if list_file is not None:
        entries, problems, where = read_list(list_file), [], str(list_file)
    else:
        (entries, problems), where = scan(root, split), f"{root} ({layout} layout, {split})"
    prefer = Path(entries[0].frame).suffix if entries else ".png"
    if layout == "video":
        index = FrameIndex(VIDEO_PATTERN, dense=True, prefer=prefer)
        items = ((entry, root / entry.frame, root / entry.label, Path(entry.label).stem) for entry in entries)
    else:
        index = FrameIndex(NAME_PATTERN, dense=False, max_gap=max_gap, prefer=prefer)
        paths = ((entry, *(root.joinpath(*Path(path).parts[-2:]) for path in (entry.frame, entry.label)))
                 for entry in entries)
        items = ((entry, frame, label, label.stem) for entry, frame, label in paths)
    return collect_frames(items, index, problems, allow_missing, where)


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
                    raise WriteError(f"{path}: could not be written")
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
