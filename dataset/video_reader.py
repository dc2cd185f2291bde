"""Frames of a user's video, one at a time: a video file OpenCV can read or a folder of images.

No labels, no list file: this is the input of inference on one's own footage (``tools/infer_video``).
Folders are read in natural name order (numbers compared as numbers: ``frame_9`` before ``frame_10``).
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator, Optional, Tuple

import cv2
import numpy as np

from .errors import MissingFileError
from .files import IMAGE_EXTENSIONS

__all__ = ["VideoFrames", "natural_key", "target_size"]


def natural_key(path: Path) -> list:
    """Sort key of a file name with its digit runs compared as numbers."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name)]


class VideoFrames:
    """The frames of ``source`` (a video file or an image folder) as H×W×3 uint8 BGR arrays.

    ``fps``: the video's frame rate (``fps`` given here wins; folders: 15). ``count``: the number of
    frames when known (None for a video whose container does not say).
    """

    def __init__(self, source: str | Path, fps: Optional[float] = None) -> None:
        self.source = Path(source)
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
        if self.paths is not None:
            for path in self.paths:
                image = cv2.imread(str(path), cv2.IMREAD_COLOR)
                if image is None:
                    raise MissingFileError(f"{path}: cannot read this image")
                yield image
            return
        capture = cv2.VideoCapture(str(self.source))
        try:
            while True:
                ok, image = capture.read()
                if not ok:
                    break
                yield image
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
