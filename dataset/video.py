"""Layout-independent video data: frame sequences, training pairs and evaluation windows.

A layout module (:mod:`dataset.cityscapes`, :mod:`dataset.camvid`) turns a folder tree into
:class:`LabelledFrame` records (:func:`collect_frames`: a sample whose frame or label is missing is
an error, or with ``allow_missing`` left out with one warning); :class:`VideoPairDataset` and
:class:`VideoWindowDataset` turn those into samples. Every evaluation set tells how many labelled
frames it expected and serves (:func:`sample_counts`, :class:`SampleCounts`).

Training sample (dict):
    ``frames`` float32 2×3×H×W RGB in [0, 1], [neighbour, labelled frame];
    ``label`` int64 H×W; ``edge`` int64 H×W in {0, 1} (255 where a crop padded it);
    ``offset`` int j (neighbour = labelled frame + j steps); ``gap`` int real frame-number
    difference neighbour − labelled frame (equals j in a video layout); ``id`` str.
Evaluation sample (dict):
    ``frames`` float32 T×3×H×W, the labelled frame last; ``label`` int64 H×W; ``id`` str;
    ``gaps`` list of T−1 ints, frame-number difference between consecutive frames.
"""

from __future__ import annotations

import bisect
import re
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple, Protocol

import numpy as np
import torch
from torch.utils.data import Dataset

from .edges import edge_label
from .errors import MissingFileError, SequenceBoundaryError
from .files import IMAGE_EXTENSIONS, check_same_size, read_frames, read_label
from .labels import ClassSet, HasClasses
from .lists import ListEntry

Sample = dict[str, Any]
Transform = Callable[[Sample, np.random.Generator], Sample]
Missing = Literal["error", "skip"]


class FrameSequence(NamedTuple):
    """Stored frames of one sequence, in frame-number order.

    ``dense`` sequences are videos with every frame stored: offset j means frame number n + j.
    Sparse ones (the SegNet CamVid release) store only some frames: offset j means the j-th
    stored frame after (j > 0) or before (j < 0) this one, whatever its frame number.
    """

    name: str
    numbers: tuple[int, ...]
    paths: tuple[str, ...]
    dense: bool

    def index(self, number: int) -> int | None:
        """Position of frame ``number``, or None if it is not stored."""
        i = bisect.bisect_left(self.numbers, number)
        return i if i < len(self.numbers) and self.numbers[i] == number else None

    def step(self, index: int, offset: int) -> int | None:
        """Position of the frame ``offset`` steps from position ``index``, or None if not stored."""
        if self.dense:
            return self.index(self.numbers[index] + offset)
        target = index + offset
        return target if 0 <= target < len(self.numbers) else None

    def gap_reason(self, index: int, offset: int) -> str:
        """Why no frame is stored ``offset`` steps from position ``index``: off the sequence's start or
        end, or a missing frame inside it."""
        target = self.numbers[index] + offset if self.dense else index + offset
        first, last = (self.numbers[0], self.numbers[-1]) if self.dense else (0, len(self.numbers) - 1)
        if target < first:
            return "runs off the sequence start"
        return "runs off the sequence end" if target > last else "a frame inside the sequence is missing"

    def describe(self) -> str:
        folder = Path(self.paths[0]).parent
        return (f"sequence {self.name!r} in {folder} (frames {self.numbers[0]}..{self.numbers[-1]}, "
                f"{len(self.numbers)} stored)")


class FrameIndex:
    """The frame sequences of folders, each folder scanned once.

    Args:
        pattern: regex that must fully match a frame file's stem, with groups ``seq`` (sequence
            name) and ``number`` (frame number).
        dense: whether every frame of a sequence is stored (see :class:`FrameSequence`).
        max_gap: sparse sequences only: split a sequence into separate runs where consecutive stored
            frames are more than ``max_gap`` frame numbers apart (None: never split).
        prefer: extension kept when one frame is stored under several image extensions.
    """

    def __init__(self, pattern: re.Pattern[str], dense: bool, max_gap: int | None = None,
                 prefer: str = ".png") -> None:
        self.pattern = pattern
        self.dense = dense
        self.max_gap = max_gap
        self._rank = {ext: i for i, ext in enumerate((prefer.lower(),) + IMAGE_EXTENSIONS)}
        self._folders: dict[Path, dict[str, list[FrameSequence]]] = {}

    def parse(self, name: str) -> tuple[str, int] | None:
        """(sequence, frame number) of a frame file name or stem, or None if it does not match."""
        match = self.pattern.fullmatch(Path(name).stem)
        return None if match is None else (match["seq"], int(match["number"]))

    def sequences(self, folder: Path) -> dict[str, list[FrameSequence]]:
        """Sequence name → its runs (one run unless split by ``max_gap``) for the frames of ``folder``."""
        if folder not in self._folders:
            self._folders[folder] = self._scan(folder)
        return self._folders[folder]

    def locate(self, path: Path) -> tuple[FrameSequence, int] | None:
        """Sequence and position of the frame that ``path`` names (any image extension), or None."""
        parsed = self.parse(path.name)
        return None if parsed is None else self.find(path.parent, *parsed)

    def find(self, folder: Path, seq: str, number: int) -> tuple[FrameSequence, int] | None:
        """Sequence and position of frame ``number`` of sequence ``seq`` in ``folder``, or None."""
        for run in self.sequences(folder).get(seq, []):
            index = run.index(number)
            if index is not None:
                return run, index
        return None

    def _scan(self, folder: Path) -> dict[str, list[FrameSequence]]:
        found: dict[str, dict[int, Path]] = {}
        if folder.is_dir():
            for path in folder.iterdir():
                ext = path.suffix.lower()
                parsed = self.parse(path.name) if ext in self._rank else None
                if parsed is None:
                    continue
                frames = found.setdefault(parsed[0], {})
                kept = frames.get(parsed[1])
                if kept is None or self._rank[ext] < self._rank[kept.suffix.lower()]:
                    frames[parsed[1]] = path
        return {seq: self._runs(seq, frames) for seq, frames in found.items()}

    def _runs(self, seq: str, frames: dict[int, Path]) -> list[FrameSequence]:
        numbers = sorted(frames)
        cuts = [0] + [i for i in range(1, len(numbers))
                      if not self.dense and self.max_gap is not None
                      and numbers[i] - numbers[i - 1] > self.max_gap] + [len(numbers)]
        return [FrameSequence(seq, tuple(numbers[a:b]), tuple(str(frames[n]) for n in numbers[a:b]),
                              self.dense) for a, b in zip(cuts[:-1], cuts[1:], strict=True)]


class LabelledFrame(NamedTuple):
    """A labelled frame in its sequence: ``sequence.paths[index]`` is the frame itself."""

    id: str
    label: str
    sequence: FrameSequence
    index: int


class Dropped(NamedTuple):
    """A labelled frame that a data set expected but left out, and why.

    ``reason`` is short and shared by frames dropped for the same cause (it groups the summary);
    ``detail`` is the one-line message naming the file at fault.
    """

    id: str
    reason: str
    detail: str = ""


@dataclass(frozen=True)
class SampleCounts:
    """How many labelled frames an evaluation data set expected and how many it serves.

    ``expected``: the labelled frames the split (or list) names; ``used``: the samples served (one
    window per labelled frame); ``dropped``: the difference, each with its reason (a missing file
    left out by ``allow_missing``, a window that runs off its sequence with ``missing="skip"``, a
    ``--limit``). ``expected == used + len(dropped)`` always.
    """

    expected: int
    used: int
    dropped: tuple[Dropped, ...] = ()

    def __post_init__(self) -> None:
        if self.expected != self.used + len(self.dropped):
            raise ValueError(f"sample counts do not add up: {self.expected} expected != {self.used} used "
                             f"+ {len(self.dropped)} dropped")

    def limited(self, limit: int | None, reason: str = "left out by --limit") -> SampleCounts:
        """The counts when only the first ``limit`` samples are evaluated (None: all)."""
        if limit is None or limit >= self.used:
            return self
        left_out = tuple(Dropped(f"sample {i}", reason) for i in range(max(limit, 0), self.used))
        return SampleCounts(self.expected, max(limit, 0), self.dropped + left_out)

    def reasons(self) -> dict[str, int]:
        """Dropped samples per reason, in order of first occurrence."""
        return dict(Counter(item.reason for item in self.dropped))

    def summary(self) -> str:
        """One line, e.g. ``93 of 101 labelled frames evaluated (8 skipped: window runs off the sequence start)``."""
        line = f"{self.used} of {self.expected} labelled frames evaluated"
        if self.dropped:
            line += " (" + "; ".join(f"{n} skipped: {reason}" for reason, n in self.reasons().items()) + ")"
        return line

    def as_json(self) -> dict[str, Any]:
        """``{"samples_expected": N, "samples_used": M, "samples_dropped": {reason: count}}`` for result files."""
        return {"samples_expected": self.expected, "samples_used": self.used, "samples_dropped": self.reasons()}


class CountsSamples(Protocol):
    """A data set that knows its :class:`SampleCounts` (every evaluation set of :func:`dataset.build_dataset`)."""

    @property
    def counts(self) -> SampleCounts: ...


def sample_counts(dataset: CountsSamples) -> SampleCounts:
    """The labelled frames ``dataset`` expected, served and dropped (see :class:`SampleCounts`)."""
    return dataset.counts


class LabelledFrames(NamedTuple):
    """What a layout module returns: the labelled frames found, and those left out by ``allow_missing``."""

    frames: list[LabelledFrame]
    dropped: tuple[Dropped, ...] = ()


def collect_frames(entries: Iterable[tuple[ListEntry, Path, Path, str]], index: FrameIndex,
                   problems: Sequence[Dropped] = (), allow_missing: bool = False,
                   where: str = "data set") -> LabelledFrames:
    """Locate each ``(entry, frame, label, sample id)`` in its sequence and check that its label exists.

    ``problems``: samples a folder scan already found incomplete. A sample whose frame (under any
    image extension) or label is missing joins them; see :func:`drop_missing` for what happens then.

    Raises:
        ListFormatError: if a frame name does not follow the layout's naming.
        MissingFileError: for the first incomplete sample, unless ``allow_missing``.
    """
    frames, problems = [], list(problems)
    for entry, frame, label, sample_id in entries:
        if index.parse(frame.name) is None:
            raise entry.error(f"frame name {frame.name!r} does not match the layout's naming "
                              f"{index.pattern.pattern!r}")
        located = index.locate(frame)
        if located is None:
            problems.append(Dropped(sample_id, "frame missing", f"{frame}: frame does not exist under any image "
                                                                f"extension (listed at {entry.source})"))
        elif not label.is_file():
            problems.append(Dropped(sample_id, "label missing",
                                    f"{label}: label file does not exist (listed at {entry.source})"))
        else:
            frames.append(LabelledFrame(sample_id, str(label), *located))
    return LabelledFrames(frames, drop_missing(problems, allow_missing, where))


def drop_missing(problems: Sequence[Dropped], allow_missing: bool, where: str) -> tuple[Dropped, ...]:
    """Raise for the first of ``problems`` (samples with a missing frame or label), or with
    ``allow_missing`` leave them all out with one warning that gives their count and first ids.

    Raises:
        MissingFileError: naming the first problem's file, unless ``allow_missing`` (or no problems).
    """
    if not problems:
        return ()
    count = len(problems)
    if not allow_missing:
        more = f" ({count - 1} more samples of {where} lack a file)" if count > 1 else ""
        raise MissingFileError(f"{problems[0].detail}{more}; --allow-missing (data.allow_missing=true in "
                               f"training) leaves such samples out")
    names = ", ".join(item.id for item in problems[:5]) + (", ..." if count > 5 else "")
    warnings.warn(f"{where}: left out {count} labelled frame(s) whose frame or label is missing "
                  f"(allow_missing): {names}", stacklevel=2)
    return tuple(problems)


class PairItem(NamedTuple):
    """A training pair as stored by :class:`VideoPairDataset` (paths, offset j, frame gap)."""

    id: str
    neighbour: str
    frame: str
    label: str
    offset: int
    gap: int


class WindowItem(NamedTuple):
    """An evaluation window as stored by :class:`VideoWindowDataset` (labelled frame last)."""

    id: str
    frames: tuple[str, ...]
    label: str
    gaps: tuple[int, ...]


def _first_gap(frame: LabelledFrame, offsets: Sequence[int]) -> int | None:
    """The first of ``offsets`` at which ``frame``'s sequence stores no frame, or None."""
    return next((offset for offset in offsets if frame.sequence.step(frame.index, offset) is None), None)


def _resolve(frame: LabelledFrame, offsets: Sequence[int], missing: Missing) -> list[int] | None:
    """Sequence positions at ``offsets`` from ``frame``; None to skip it; raises for ``"error"``."""
    if missing not in ("error", "skip"):
        raise ValueError(f"missing must be 'error' or 'skip', got {missing!r}")
    offset = _first_gap(frame, offsets)
    if offset is None:
        return [frame.sequence.step(frame.index, step) for step in offsets]
    if missing == "skip":
        return None
    unit = "frame numbers" if frame.sequence.dense else "stored frames"
    raise SequenceBoundaryError(
        f"sample {frame.id!r} (frame {frame.sequence.numbers[frame.index]}): no frame at "
        f"offset {offset:+d} (counted in {unit}) in {frame.sequence.describe()}; the clip runs off its "
        f"sequence or the frame is missing (missing='skip' drops such samples)")


def frames_to_tensor(frames: np.ndarray) -> torch.Tensor:
    """T×H×W×3 uint8 RGB → T×3×H×W float32 in [0, 1]."""
    # one strided copy that also converts (a uint8 torch permute + contiguous is ~5x slower)
    return torch.from_numpy(np.ascontiguousarray(frames.transpose(0, 3, 1, 2), dtype=np.float32)).div_(255.0)


class _LabelledVideo(HasClasses, Dataset):
    """Loading shared by pairs and windows: frames + checked label as tensors."""

    def __init__(self, classes: ClassSet) -> None:
        self.classes = classes

    def _load(self, frame_paths: Sequence[str], label_path: str) -> tuple[np.ndarray, np.ndarray]:
        frames = read_frames(frame_paths)
        label = read_label(label_path, self.classes)
        check_same_size([(frame_paths[-1], frames[-1]), (label_path, label)])
        return frames, label


class VideoPairDataset(_LabelledVideo):
    """Training pairs: each labelled frame with its neighbour at each offset j.

    The edge label is built from the full-resolution label before ``transform`` runs, so the
    transform flips/crops it with the frames and label. ``transform(sample, rng)`` gets a numpy
    Generator seeded from ``(seed, epoch, index)``, so a sample's augmentation does not depend
    on the worker or rank that loads it, and a resumed run repeats it; call :meth:`set_epoch`
    before each epoch's DataLoader iterator is created (with ``persistent_workers=True`` the
    workers keep the epoch they started with).

    Args:
        frames: labelled frames from a layout module.
        classes: label space (value range check, ignore value, thin classes of the edge label).
        offsets: neighbour offsets j (Cityscapes (-5..-1, 2..5), CamVid (-5..-1, 1..5)).
        transform: callable ``(sample, rng) -> sample`` (see :mod:`dataset.transforms`).
        missing: ``"error"`` raises :class:`SequenceBoundaryError` for a neighbour that is not
            stored; ``"skip"`` leaves that (frame, offset) pair out.
        seed: base seed of the per-sample generators.
    """

    def __init__(self, frames: Sequence[LabelledFrame], classes: ClassSet, offsets: Sequence[int],
                 transform: Transform | None = None, missing: Missing = "error", seed: int = 0) -> None:
        super().__init__(classes)
        self.transform = transform
        self.seed = seed
        self.epoch = 0
        self.items: list[PairItem] = []
        for frame in frames:
            for offset in offsets:
                positions = _resolve(frame, [offset], missing)
                if positions is None:
                    continue
                numbers, paths = frame.sequence.numbers, frame.sequence.paths
                self.items.append(PairItem(frame.id, paths[positions[0]], paths[frame.index], frame.label,
                                           offset, numbers[positions[0]] - numbers[frame.index]))

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose augmentation the next iterator draws."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> Sample:
        item = self.items[index]
        frames, label = self._load([item.neighbour, item.frame], item.label)
        sample = {
            "frames": frames_to_tensor(frames),
            "label": torch.from_numpy(label.astype(np.int64)),
            "edge": torch.from_numpy(edge_label(label, thin_classes=self.classes.thin_classes)),
            "offset": item.offset,
            "gap": item.gap,
            "id": item.id,
        }
        if self.transform is not None:
            sample = self.transform(sample, np.random.default_rng((self.seed, self.epoch, index)))
        return sample


class VideoWindowDataset(_LabelledVideo):
    """Evaluation windows: the ``length`` frames ending at each labelled frame (offsets
    ``-(length-1)..0``, the labelled frame last).

    Args:
        frames: labelled frames from a layout module.
        classes: label space.
        length: window length T (10 in the original's protocol: key distances up to 9).
        missing: ``"error"`` raises :class:`SequenceBoundaryError` for a window that runs off its
            sequence; ``"skip"`` leaves such labelled frames out.
        dropped: labelled frames the layout already left out (:attr:`LabelledFrames.dropped`).

    :attr:`counts` (:func:`sample_counts`): the labelled frames given and dropped, and the windows served.
    """

    def __init__(self, frames: Sequence[LabelledFrame], classes: ClassSet, length: int = 10,
                 missing: Missing = "error", dropped: Sequence[Dropped] = ()) -> None:
        super().__init__(classes)
        self.length = length
        self.items: list[WindowItem] = []
        skipped = []
        offsets = range(1 - length, 1)
        for frame in frames:
            positions = _resolve(frame, offsets, missing)
            if positions is None:
                gap = _first_gap(frame, offsets)
                skipped.append(Dropped(frame.id, f"window {frame.sequence.gap_reason(frame.index, gap)}"))
                continue
            numbers = [frame.sequence.numbers[p] for p in positions]
            self.items.append(WindowItem(frame.id, tuple(frame.sequence.paths[p] for p in positions),
                                         frame.label, tuple(int(g) for g in np.diff(numbers))))
        dropped = tuple(dropped) + tuple(skipped)
        self.counts = SampleCounts(len(self.items) + len(dropped), len(self.items), dropped)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> Sample:
        item = self.items[index]
        frames, label = self._load(item.frames, item.label)
        return {
            "frames": frames_to_tensor(frames),
            "label": torch.from_numpy(label.astype(np.int64)),
            "id": item.id,
            "gaps": list(item.gaps),
        }
