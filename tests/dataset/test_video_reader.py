"""dataset.video_reader: a user's frames in natural order, clear errors, one frame size, the processing size."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from dataset.errors import FrameSizeError, MissingFileError
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


def _folder(tmp_path, sizes) -> list:
    paths = []
    for i, (h, w) in enumerate(sizes):
        paths.append(tmp_path / f"frame_{i}.png")
        cv2.imwrite(str(paths[-1]), np.full((h, w, 3), 10 * i, np.uint8))
    return paths


def test_frame_of_another_size_is_an_error(tmp_path):
    paths = _folder(tmp_path, [(4, 6), (4, 6), (6, 8)])
    frames = iter(VideoFrames(tmp_path))
    assert next(frames).shape == next(frames).shape == (4, 6, 3)
    with pytest.raises(FrameSizeError, match=rf"{paths[2]} is 6x8 but the first frame {paths[0]} is 4x6: "
                                             r".*--resize-mismatched"):
        next(frames)


def test_resize_mismatched_frames_is_announced_once_and_counted(tmp_path, capsys):
    _folder(tmp_path, [(4, 6), (6, 8), (4, 6), (2, 3)])
    source = VideoFrames(tmp_path, resize_mismatched=True)
    frames = list(source)
    assert [f.shape for f in frames] == [(4, 6, 3)] * 4
    assert [int(f[0, 0, 0]) for f in frames] == [0, 10, 20, 30]  # flat frames keep their value when resized
    assert source.resized == 2
    err = capsys.readouterr().err
    assert err.count("[frames]") == 1 and "frame_1.png is 6x8 but the first frame" in err
    assert len(list(source)) == 4 and source.resized == 2  # counted afresh on each pass
