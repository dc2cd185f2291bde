"""Frames of a user's video, one at a time: a video file OpenCV can read or a folder of images.

No labels, no list file: this is the input of inference on one's own footage (``tools/infer_video``).
Folders are read in natural name order (numbers compared as numbers: ``frame_9`` before ``frame_10``).
Every frame must have the first frame's size (:class:`FrameSizeError` otherwise), unless resizing such
frames is asked for: then it is announced once on stderr and counted.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Iterator, Optional, Tuple

import cv2
import numpy as np

from .errors import FrameSizeError, MissingFileError
from .files import IMAGE_EXTENSIONS

__all__ = ["VideoFrames", "natural_key", "target_size"]


def natural_key(path: Path) -> list:
    """Sort key of a file name with its digit runs compared as numbers."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name)]


class VideoFrames:
    """The frames of ``source`` (a video file or an image folder) as H×W×3 uint8 BGR arrays.

    ``fps``: the video's frame rate (``fps`` given here wins; folders: 15). ``count``: the number of
    frames when known (None for a video whose container does not say). A frame whose size differs from
    the first frame's raises :class:`FrameSizeError`; with ``resize_mismatched`` it is resized (area
    interpolation) to the first frame's size instead, the first time with a note on stderr, and
    :attr:`resized` counts such frames.
    """

    def __init__(self, source: str | Path, fps: Optional[float] = None, resize_mismatched: bool = False) -> None:
        self.source = Path(source)
        self.resize_mismatched = resize_mismatched
        self.resized = 0
        if not self.source.exists():
            raise MissingFileError(f"{self.source}: no such video file or frame folder")
        if self.source.is_dir():
            self.paths: Optional[list[Path]] = sorted(
                (p for p in self.source.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS), key=natural_key)
            if not self.paths:
                raise MissingFileError(f"{self.source}: folder holds no images ({', '.join(IMAGE_EXTENSIONS)})")
            self.fps = fps or 15.0
            self.count: Optional[int] = len(self.paths)
        else:
            self.paths = None
            capture = cv2.VideoCapture(str(self.source))
            if not capture.isOpened():
                raise MissingFileError(f"{self.source}: OpenCV cannot open this video")
            native = capture.get(cv2.CAP_PROP_FPS)
            self.fps = fps or (native if native and native > 0 else 25.0)
            self.count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) or None
            capture.release()

    def __iter__(self) -> Iterator[np.ndarray]:
        self.resized = 0
        first: Optional[tuple[str, tuple[int, ...]]] = None
        for name, image in self._decoded():
            if first is None:
                first = name, image.shape[:2]
            elif image.shape[:2] != first[1]:
                image = self._mismatched(name, image, *first)
            yield image

    def _mismatched(self, name: str, image: np.ndarray, first_name: str, size: tuple[int, ...]) -> np.ndarray:
        """``image`` resized to the first frame's ``size`` (H, W), or a FrameSizeError."""
        (h, w), (first_h, first_w) = image.shape[:2], size
        what = f"{name} is {h}x{w} but the first frame {first_name} is {first_h}x{first_w}"
        if not self.resize_mismatched:
            raise FrameSizeError(f"{what}: the frames of a video must share one size (--resize-mismatched "
                                 f"resizes such frames to the first frame's size)")
        if self.resized == 0:
            print(f"[frames] {what}: resizing every frame of another size to {first_h}x{first_w} "
                  f"(--resize-mismatched)", file=sys.stderr, flush=True)
        self.resized += 1
        return cv2.resize(image, (first_w, first_h), interpolation=cv2.INTER_AREA)

    def _decoded(self) -> Iterator[tuple[str, np.ndarray]]:
        """(name for messages, H×W×3 uint8 BGR frame) in order."""
        if self.paths is not None:
            for path in self.paths:
                image = cv2.imread(str(path), cv2.IMREAD_COLOR)
                if image is None:
                    raise MissingFileError(f"{path}: cannot read this image")
                yield str(path), image
            return
        capture = cv2.VideoCapture(str(self.source))
        try:
            index = 0
            while True:
                ok, image = capture.read()
                if not ok:
                    break
                yield f"{self.source} frame {index}", image
                index += 1
        finally:
            capture.release()


def target_size(height: int, width: int, max_size: Optional[int], size: Optional[Tuple[int, int]]) -> Tuple[int, int]:
    """Processing size (H, W): ``size`` if given, else scaled so the longer side is ≤ ``max_size``."""
    if size is not None:
        return size
    if max_size and max(height, width) > max_size:
        scale = max_size / max(height, width)
        return max(8, round(height * scale)), max(8, round(width * scale))
    return height, width
