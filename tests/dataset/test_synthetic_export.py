"""Writing synthetic clips in the Cityscapes, CamVid and SegNet layouts (:mod:`dataset.synthetic.export`)."""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from dataset.synthetic import (
    TRAINID_TO_LABELID,
    clip_seed,
    render_clip,
    write_camvid_layout,
    write_cityscapes_layout,
    write_segnet_layout,
)


@pytest.mark.slow
def test_write_cityscapes_layout(tmp_path: Path):
    entries = write_cityscapes_layout(tmp_path, "val", num_clips=2, height=32, width=64, seed=0, num_frames=22,
                                      annotated=19)
    assert len(entries) == 2
    frames = sorted((tmp_path / "leftImg8bit_sequence" / "val").rglob("*.png"))
    assert len(frames) == 2 * 22
    pattern = re.compile(r"[a-z]+_\d{6}_\d{6}_leftImg8bit\.png")
    assert all(pattern.fullmatch(p.name) for p in frames)
    frame, label = entries[0]
    assert frame.startswith("leftImg8bit_sequence/val/") and frame.endswith("_000019_leftImg8bit.png")
    assert label == frame.replace("leftImg8bit_sequence", "gtFine").replace("leftImg8bit.png", "gtFine_labelTrainIds.png")
    train_ids = cv2.imread(str(tmp_path / label), cv2.IMREAD_UNCHANGED)
    label_ids = cv2.imread(str(tmp_path / label.replace("labelTrainIds", "labelIds")), cv2.IMREAD_UNCHANGED)
    assert train_ids.shape == (32, 64) and train_ids.max() <= 18
    np.testing.assert_array_equal(label_ids, TRAINID_TO_LABELID[train_ids])
    assert len(list((tmp_path / "gtFine").rglob("*_gtFine_labelTrainIds.png"))) == 2
    clip = render_clip(clip_seed("val", 0, 0), 22, 32, 64, flows=False)
    np.testing.assert_array_equal(train_ids, clip["labels"][19])
    image = cv2.cvtColor(cv2.imread(str(tmp_path / frame)), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(image, clip["frames"][19])
    assert (tmp_path / "val.txt").read_text().splitlines()[0] == f"{frame} {label}"


def test_write_camvid_layout(tmp_path: Path):
    entries = write_camvid_layout(tmp_path, "train", num_clips=1, height=24, width=32, num_frames=12,
                                  labelled=(9,), first_number=100)
    assert entries == [("video_image/SYT000/SYT000.avi_000109.png", "11labels/SYT000_000109.png")]
    assert len(list((tmp_path / "video_image" / "SYT000").glob("SYT000.avi_*.png"))) == 12
    assert (tmp_path / "video_image/SYT000/SYT000.avi_000100.png").is_file()
    label = cv2.imread(str(tmp_path / entries[0][1]), cv2.IMREAD_UNCHANGED)
    assert label.shape == (24, 32) and label.max() <= 10
    assert (tmp_path / "train.txt").read_text() == "video_image/SYT000/SYT000.avi_000109.png 11labels/SYT000_000109.png\n"


def test_write_segnet_layout(tmp_path: Path):
    entries = write_segnet_layout(tmp_path, "val", num_clips=1, height=24, width=32, num_frames=3, ext="jpg",
                                  first_number=7959)
    names = ["SYV000_07959", "SYV000_07961", "SYV000_07963"]
    assert [Path(e[0]).stem for e in entries] == names
    for name in names:
        assert (tmp_path / "val" / f"{name}.jpg").is_file() and (tmp_path / "valannot" / f"{name}.png").is_file()
    lines = (tmp_path / "val.txt").read_text().splitlines()
    assert lines[0] == "/SegNet/CamVid/val/SYV000_07959.png /SegNet/CamVid/valannot/SYV000_07959.png"


def test_segnet_list_has_the_upstream_line_format(tmp_path: Path, shared_dir: Path):
    """The SegNet list written matches the line format of the real CamVid SegNet list."""
    upstream_list = shared_dir / "data" / "camvid_segnet" / "val.txt"
    if not upstream_list.is_file():
        pytest.skip(f"{upstream_list} is absent")
    write_segnet_layout(tmp_path, "val", num_clips=1, height=24, width=32, num_frames=1)
    line = (tmp_path / "val.txt").read_text().splitlines()[0]
    upstream = upstream_list.read_text().splitlines()[0]
    shape = re.compile(r"/SegNet/CamVid/(\w+)/(\w+)_(\d{5})\.png /SegNet/CamVid/\1annot/\2_\3\.png")
    assert shape.fullmatch(upstream) and shape.fullmatch(line)
