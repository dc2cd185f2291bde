"""Video semantic segmentation data: Cityscapes and CamVid layouts, synthetic clips, transforms.

:func:`build_dataset` is the entry point; the sample dicts are described in :mod:`dataset.video`.
:func:`sample_counts` tells how many labelled frames an evaluation set expected, serves and dropped.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from torch.utils.data import Dataset

from .camvid import CAMVID_OFFSETS, camvid_frames, camvid_segnet_list, camvid_split, camvid_video_list, detect_layout
from .cityscapes import CITYSCAPES_OFFSETS, cityscapes_frames, cityscapes_list
from .edges import edge_label
from .errors import (
    DatasetError,
    FrameSizeError,
    LabelValueError,
    ListFormatError,
    MissingFileError,
    SequenceBoundaryError,
)
from .labels import CAMVID, CITYSCAPES, ClassSet, colorize, label_ids_to_train_ids
from .lists import ListEntry, read_list, write_list
from .synthetic import SyntheticVideoDataset
from .transforms import Compose, RandomCrop, RandomHorizontalFlip, RandomScale, train_transform
from .video import (Dropped, LabelledFrames, Missing, SampleCounts, Transform, VideoPairDataset,
                    VideoWindowDataset, sample_counts)
from .windows import AugmentedWindows, SyntheticClipWindows

__all__ = [
    "AugmentedWindows", "CAMVID", "CAMVID_OFFSETS", "CITYSCAPES", "CITYSCAPES_OFFSETS", "ClassSet", "Compose",
    "DATASETS", "DatasetError", "Dropped", "FrameSizeError", "LabelValueError", "LabelledFrames", "ListEntry",
    "ListFormatError", "MissingFileError", "RandomCrop", "RandomHorizontalFlip", "RandomScale", "SampleCounts",
    "SequenceBoundaryError", "SyntheticClipWindows", "VideoPairDataset", "VideoWindowDataset", "build_dataset",
    "camvid_frames", "camvid_segnet_list", "camvid_split", "camvid_video_list", "cityscapes_frames",
    "cityscapes_list", "colorize", "detect_layout", "edge_label", "label_ids_to_train_ids", "read_list",
    "sample_counts", "train_transform", "write_list",
]

DATASETS = ("cityscapes", "camvid", "camvid_video", "camvid_segnet", "synthetic")


def build_dataset(name: str, root: str | Path | None = None, split: str = "train",
                  mode: Literal["train", "eval", "windows"] = "train", *, list_file: str | Path | None = None,
                  offsets: tuple[int, ...] | None = None, length: int | None = None,
                  transform: Transform | None = None, missing: Missing | None = None,
                  seed: int | None = None, max_gap: int | None = None, allow_missing: bool = False,
                  **synthetic_kwargs) -> Dataset:
    """Build a training-pair (``mode="train"``), evaluation-window (``mode="eval"``) or
    training-window (``mode="windows"``) data set.

    Args:
        name: one of :data:`DATASETS`; ``"camvid"`` detects the video or SegNet layout.
        root: data root (not used by ``"synthetic"``).
        split: split name (Cityscapes / SegNet: the folder; CamVid video: train, val, test, trainval, all).
        mode: ``"train"`` → :class:`VideoPairDataset`, ``"eval"`` → :class:`VideoWindowDataset`,
            ``"windows"`` → :class:`dataset.windows.AugmentedWindows`: the evaluation windows with
            ``transform`` applied to the whole window (synthetic: every window of ``length``
            consecutive frames of the clips, :class:`dataset.windows.SyntheticClipWindows`).
        list_file: list in the original format; the folders are scanned when None.
        offsets: training neighbour offsets (default: the original's for the data set).
        length: window length T (default 10 in ``"eval"`` mode, required in ``"windows"`` mode).
        transform: training transform ``(sample, rng) -> sample``.
        missing: ``"error"`` or ``"skip"`` for neighbours/windows that are not stored. Default:
            ``"skip"`` for SegNet-layout training (the first and last labelled frames of a
            sequence lack some neighbours by construction), ``"error"`` otherwise.
        seed: training augmentation seed (default 0).
        max_gap: SegNet layout: split sequences at larger frame-number jumps (see
            :func:`dataset.camvid.camvid_frames`).
        allow_missing: leave out, with one warning, the labelled frames whose frame or label file is
            missing (listed or found by the folder scan) instead of raising :class:`MissingFileError`
            (data on disk only). Evaluation sets count them as dropped (:func:`sample_counts`).
        synthetic_kwargs: further ``dataset.synthetic.SyntheticVideoDataset`` arguments (in
            ``"windows"`` mode those of :class:`dataset.windows.SyntheticClipWindows`); for
            ``"synthetic"``, ``offsets``, ``transform``, ``seed`` and ``length`` (as ``window``) are
            passed on too.
    """
    if mode == "windows" and length is None:
        raise TypeError("build_dataset(mode='windows') needs the window length")
    if name == "synthetic":
        unused = {"root": root, "list_file": list_file, "missing": missing, "max_gap": max_gap,
                  "allow_missing": allow_missing or None}
        if any(value is not None for value in unused.values()):
            raise TypeError(f"build_dataset('synthetic'): {sorted(k for k, v in unused.items() if v is not None)} "
                            f"apply to data on disk only")
        passed = {"offsets": offsets, "transform": transform, "seed": seed, "window": length}
        clash = sorted(key for key, value in passed.items() if value is not None and key in synthetic_kwargs)
        if clash:
            raise TypeError(f"build_dataset('synthetic'): {clash} given twice")
        if mode == "windows":
            windows = SyntheticClipWindows(split, length=length, seed=0 if seed is None else seed, **synthetic_kwargs)
            return AugmentedWindows(windows, transform, 0 if seed is None else seed)
        return SyntheticVideoDataset(split=split, mode=mode, **synthetic_kwargs,
                                     **{key: value for key, value in passed.items() if value is not None})
    if synthetic_kwargs:
        raise TypeError(f"build_dataset({name!r}): unexpected arguments {sorted(synthetic_kwargs)}")
    if name not in DATASETS:
        raise DatasetError(f"unknown data set {name!r}; expected one of {DATASETS}")
    if root is None:
        raise DatasetError(f"data set {name!r} needs a data root")
    if mode not in ("train", "eval", "windows"):
        raise DatasetError(f"mode must be 'train', 'eval' or 'windows', got {mode!r}")
    if name == "cityscapes":
        classes, default_offsets, layout = CITYSCAPES, CITYSCAPES_OFFSETS, "video"
        found = cityscapes_frames(root, split, list_file, allow_missing=allow_missing)
    else:
        layout = {"camvid_video": "video", "camvid_segnet": "segnet"}.get(name) or detect_layout(root, split)
        classes, default_offsets = CAMVID, CAMVID_OFFSETS
        found = camvid_frames(root, split, list_file, layout=layout, max_gap=max_gap, allow_missing=allow_missing)
    frames = found.frames
    if mode != "train":
        windows = VideoWindowDataset(frames, classes, length=10 if length is None else length,
                                     missing=missing or "error", dropped=found.dropped)
        return windows if mode == "eval" else AugmentedWindows(windows, transform, 0 if seed is None else seed)
    if missing is None:
        missing = "skip" if layout == "segnet" else "error"
    return VideoPairDataset(frames, classes, default_offsets if offsets is None else offsets,
                            transform=transform, missing=missing, seed=0 if seed is None else seed)
