"""Whole clips, labelled on every frame, for the keyframe-schedule sweep.

* synthetic: the embedded clips of a split (:func:`engine.compare.comparison_clips`), every frame labelled;
* CamVid in the SegNet layout: each run of consecutive stored frames of a sequence is one clip (the
  val split is one unbroken 101-frame 15 Hz clip of 0016E5, labelled on every frame).

A :class:`Clip` loads its frames only when asked, so one clip at a time sits in memory.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from dataset import CAMVID, camvid_frames, detect_layout
from dataset.errors import DatasetError
from dataset.files import check_same_size, read_frames, read_label
from dataset.video import LabelledFrame, frames_to_tensor
from engine.compare import comparison_clips
from engine.config import ConfigError
from engine.stream_eval import clip_labels

__all__ = ["Clip", "ClipSet", "camvid_clips", "synthetic_clips"]


@dataclass(frozen=True)
class Clip:
    """One clip: ``load()`` returns its frames (T×3×H×W float RGB in [0, 1], CPU) and one label per
    frame (H×W int64, None where unlabelled)."""

    id: str
    num_frames: int
    load: Callable[[], tuple[Tensor, list[Tensor | None]]]


@dataclass(frozen=True)
class ClipSet:
    """The clips of an evaluation and their label space."""

    clips: list[Clip]
    num_classes: int
    ignore_index: int
    description: str


def synthetic_clips(split: str, num_clips: int, clip_len: int, height: int, width: int,
                    num_classes: int = 19) -> ClipSet:
    """``num_clips`` synthetic clips of ``clip_len`` frames at height×width of ``split``."""
    try:
        data = comparison_clips("synthetic", split, num_clips=num_clips, clip_len=clip_len, height=height,
                                width=width, num_classes=num_classes)
    except ValueError as err:  # the synthetic set's own checks (split, size, classes)
        raise ConfigError(f"--dataset synthetic: {err}") from None

    def loader(i: int) -> Callable[[], tuple[Tensor, list[Tensor | None]]]:
        def load() -> tuple[Tensor, list[Tensor | None]]:
            sample = data[i]
            return sample["frames"], clip_labels(sample, "cpu")
        return load

    clips = [Clip(f"synthetic_{split}_{i:04d}", clip_len, loader(i)) for i in range(len(data))]
    return ClipSet(clips, data.num_classes, data.ignore_index,
                   f"synthetic {split}, {len(clips)} clips of {clip_len} frames at {height}x{width}")


def _runs(frames: list[LabelledFrame]) -> list[list[LabelledFrame]]:
    """The labelled frames split into runs of consecutive stored frames of one sequence."""
    by_sequence: dict[tuple[str, tuple[int, ...]], list[LabelledFrame]] = {}
    for frame in frames:
        by_sequence.setdefault((frame.sequence.name, frame.sequence.numbers), []).append(frame)
    runs = []
    for group in by_sequence.values():
        group.sort(key=lambda f: f.index)
        run = [group[0]]
        for frame in group[1:]:
            if frame.index != run[-1].index + 1:
                runs.append(run)
                run = []
            run.append(frame)
        runs.append(run)
    return runs


def _camvid_loader(run: list[LabelledFrame]) -> Callable[[], tuple[Tensor, list[Tensor | None]]]:
    def load() -> tuple[Tensor, list[Tensor | None]]:
        paths = [f.sequence.paths[f.index] for f in run]
        frames = read_frames(paths)
        labels = [read_label(f.label, CAMVID) for f in run]
        check_same_size([(paths[0], frames[0])] + [(f.label, lb) for f, lb in zip(run, labels, strict=True)])
        return frames_to_tensor(frames), [torch.from_numpy(lb.astype(np.int64)) for lb in labels]
    return load


def camvid_clips(root: str | Path, split: str = "val", max_gap: int | None = None) -> ClipSet:
    """The clips of a CamVid split: each run of at least two consecutive stored frames of a sequence,
    all labelled (the SegNet layout stores only labelled frames); ``max_gap``: a jump of more than
    that many frame numbers between stored frames also starts a new clip (None: never).

    Raises:
        DatasetError: when no two consecutive stored frames are labelled (the video layout labels one
            frame in 30: use the SegNet layout), or for a missing or bad file.
    """
    found = camvid_frames(root, split, layout=detect_layout(root, split), max_gap=max_gap)
    runs = [run for run in _runs(found.frames) if len(run) >= 2]
    if not runs:
        raise DatasetError(f"{root} ({split}): no two consecutive stored frames are labelled, so there is no clip "
                           f"to sweep keyframe schedules on (use the SegNet layout, labelled on every frame)")
    clips = []
    for run in runs:
        seq = run[0].sequence
        first, last = seq.numbers[run[0].index], seq.numbers[run[-1].index]
        clips.append(Clip(f"{seq.name}_{first}-{last}", len(run), _camvid_loader(run)))
    frames = sum(c.num_frames for c in clips)
    return ClipSet(clips, CAMVID.num_classes, CAMVID.ignore_index,
                   f"camvid {split} ({root}), {len(clips)} clips, {frames} frames")
