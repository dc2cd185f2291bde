"""tools/infer_video.py on a video file and on a folder of frames (the CamVid clip of the reference material),
and frames of another size in a folder."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from tools import infer_video


@pytest.mark.slow
def test_infer_video_file_and_folder(shared_dir, make_weights, tmp_path, capsys):
    folder = shared_dir / "data" / "camvid_segnet" / "val"
    if not folder.is_dir():
        pytest.skip(f"{folder} not found")
    frames = sorted(folder.glob("*.jpg"))[:6]
    video = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 15.0, (480, 360))
    for f in frames:
        writer.write(cv2.imread(str(f)))
    writer.release()
    ckpt = tmp_path / "camvid.pth"
    torch.save(make_weights.make_state_dict("camvid", 0), ckpt)

    out = tmp_path / "seg.mp4"
    rep = infer_video.main([str(video), "--checkpoint", str(ckpt), "--num-classes", "11", "--out", str(out),
                            "--keyframe-interval", "3", "--show-distortion", "--png-dir", str(tmp_path / "png"),
                            "--device", "cpu", "--no-progress", "--max-size", "240"])
    assert rep["frames"] == 6 and rep["keyframes"] == 2 and rep["size"] == [180, 240]
    assert "fps" in capsys.readouterr().out
    cap = cv2.VideoCapture(str(out))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 6
    assert (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))) == (480, 180)
    cap.release()
    pngs = sorted((tmp_path / "png").glob("*.png"))
    assert len(pngs) == 6 and cv2.imread(str(pngs[0])).shape == (180, 480, 3)

    out2 = tmp_path / "folder.mp4"
    rep = infer_video.main([str(folder), "--checkpoint", str(ckpt), "--num-classes", "11", "--out", str(out2),
                            "--keyframe-interval", "2", "--max-frames", "4", "--device", "cpu", "--no-progress",
                            "--max-size", "240", "--label-dir", str(tmp_path / "labels")])
    assert rep["frames"] == 4 and rep["keyframes"] == 2
    labels = sorted((tmp_path / "labels").glob("*.png"))
    assert len(labels) == 4 and cv2.imread(str(labels[0]), cv2.IMREAD_UNCHANGED).max() < 11
    assert out2.stat().st_size > 0


def test_frame_of_another_size_stops_unless_resize_mismatched(tmp_path, capsys):
    from dataset.errors import FrameSizeError

    folder = tmp_path / "frames"
    folder.mkdir()
    for i, (h, w) in enumerate([(32, 48), (32, 48), (40, 64), (32, 48)]):
        cv2.imwrite(str(folder / f"{i:03d}.png"), np.full((h, w, 3), 40 * i, np.uint8))
    args = [str(folder), "--out", str(tmp_path / "seg.mp4"), "--device", "cpu", "--no-progress", "--threads", "1"]
    with pytest.warns(UserWarning, match="random weights"), \
            pytest.raises(FrameSizeError, match=r"002\.png is 40x64 but the first frame .*000\.png is 32x48"):
        infer_video.main(args)
    with pytest.warns(UserWarning, match="random weights"):
        report = infer_video.main(args + ["--resize-mismatched", "--max-size", "24"])
    assert report["frames"] == 4 and report["resized_frames"] == 1 and report["size"] == [16, 24]
    captured = capsys.readouterr()
    assert captured.err.count("is 40x64 but the first frame") == 1  # the one note
    assert "1 of another size resized to the first's" in captured.out
    with pytest.warns(UserWarning, match="random weights"):
        assert infer_video.main(args + ["--max-frames", "2"])["resized_frames"] == 0  # frame 2 is never read


def _frames(folder, n=7, size=(32, 48)):
    folder.mkdir()
    for i in range(n):
        cv2.imwrite(str(folder / f"{i:03d}.png"), np.full((*size, 3), 30 * i % 255, np.uint8))


@pytest.mark.parametrize("schedule, expected", [
    (["--schedule", "fixed", "-k", "3"], [0, 3, 6]),
    (["--schedule", "adaptive", "--threshold", "2", "--max-interval", "3"], [0, 3, 6]),   # never passed: max
    (["--schedule", "adaptive", "--threshold", "-1", "--max-interval", "9"], list(range(7))),  # always passed
])
def test_schedules_decide_and_draw_the_keyframes(tmp_path, schedule, expected):
    _frames(tmp_path / "frames")
    torch.manual_seed(0)
    png = tmp_path / "png"
    with pytest.warns(UserWarning, match="random weights"):
        rep = infer_video.main([str(tmp_path / "frames"), "--out", str(tmp_path / "seg.mp4"), "--device", "cpu",
                                "--no-progress", "--threads", "1", "--png-dir", str(png), *schedule])
    assert rep["frames"] == 7 and rep["keyframes"] == len(expected)
    assert rep["keyframe_fraction"] == pytest.approx(len(expected) / 7)
    red_border = [t for t, path in enumerate(sorted(png.glob("*.png")))
                  if tuple(cv2.imread(str(path))[0, 0]) == (30, 30, 230)]  # BGR of the keyframe colour
    assert red_border == expected


def test_bad_schedule_values_are_config_errors(tmp_path):
    from engine.config import ConfigError

    _frames(tmp_path / "frames", n=2)
    for bad, message in [(["--schedule", "budget", "--budget", "0"], "fraction must be in"),
                         (["--schedule", "fixed", "-k", "0"], "k must be an integer >= 1"),
                         (["--schedule", "adaptive", "--min-interval", "5", "--max-interval", "2"], "min_interval")]:
        with pytest.raises(ConfigError, match=message):
            infer_video.main([str(tmp_path / "frames"), "--out", str(tmp_path / "o.mp4"), "--no-progress", *bad])
