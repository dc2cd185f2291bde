"""dataset.video_reader: a user's frames in natural order, clear errors, the processing size."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from dataset.errors import MissingFileError
from dataset.video_reader import VideoFrames, target_size


def test_folder_frames_come_in_natural_order(tmp_path):
    for i in (10, 2, 1):  # written out of order; "frame_10" sorts after "frame_2" by number
        cv2.imwrite(str(tmp_path / f"frame_{i}.png"), np.full((4, 6, 3), i, np.uint8))
    (tmp_path / "notes.txt").write_text("not a frame")
    frames = VideoFrames(tmp_path)
    assert frames.count == 3 and frames.fps == 15.0
    assert [int(f[0, 0, 0]) for f in frames] == [1, 2, 10]


def test_missing_inputs_name_the_path(tmp_path):
    with pytest.raises(MissingFileError, match="no such video file or frame folder"):
        VideoFrames(tmp_path / "absent.mp4")
    with pytest.raises(MissingFileError, match="folder holds no images"):
        VideoFrames(tmp_path)
    (tmp_path / "broken.mp4").write_text("not a video")
    with pytest.raises(MissingFileError, match="OpenCV cannot open this video"):
        VideoFrames(tmp_path / "broken.mp4")


def test_target_size():
    assert target_size(720, 1280, None, None) == (720, 1280)
    assert target_size(720, 1280, 640, None) == (360, 640)      # the longer side becomes 640
    assert target_size(720, 1280, 2000, None) == (720, 1280)    # never enlarged
    assert target_size(720, 1280, 640, (100, 200)) == (100, 200)
