"""Training sees the same data checks as evaluation: a missing label stops it unless
data.allow_missing is set, and every evaluation records how many samples it expected and used."""
from __future__ import annotations

import json

import pytest

from dataset import MissingFileError
from dataset.synthetic.export import write_segnet_layout
from engine import distributed
from engine.stages import train


pytestmark = pytest.mark.usefixtures("one_thread")


def run(overrides):
    try:
        return train("csrnet", None, overrides)
    finally:
        distributed.cleanup()


def camvid_run(root, out, *extra):
    return [f"out_dir={out}", "device=cpu", "data.name=camvid_segnet", f"data.root={root}", "data.num_classes=11",
            "data.crop=null", "data.scale=null", "data.offsets=[0]", "model.pretrained_backbone=false",
            "train.batch_size=2", "train.iters=1", "train.workers=0", "train.progress=false", "train.tb_images=0",
            *extra]


@pytest.mark.slow
def test_missing_label_stops_training_unless_allowed(tmp_path):
    root = tmp_path / "camvid"
    for split in ("train", "val"):
        write_segnet_layout(root, split, num_clips=1, height=32, width=48, num_frames=6)
    label = sorted((root / "valannot").glob("*.png"))[3]
    label.unlink()
    with pytest.raises(MissingFileError, match=label.name):
        run(camvid_run(root, tmp_path / "strict"))
    with pytest.warns(UserWarning, match="1 "):
        summary = run(camvid_run(root, tmp_path / "lenient", "data.allow_missing=true"))
    record = json.loads((tmp_path / "lenient" / "metrics.jsonl").read_text().splitlines()[-1])
    assert record["samples_expected"] == 6 and record["samples_used"] == 5
    assert record["samples_dropped"] == {"label missing": 1}
    assert summary["iteration"] == 1
    assert "5 of 6 labelled frames evaluated (1 skipped: label missing)" in (tmp_path / "lenient" / "log.txt").read_text()


@pytest.mark.slow
def test_val_limit_is_recorded(tmp_path):
    out = tmp_path / "run"
    run([f"out_dir={out}", "device=cpu", "data.synthetic.height=32", "data.synthetic.width=64",
         "data.synthetic.train_clips=1", "data.synthetic.val_clips=2", "data.synthetic.clip_len=4",
         "data.val_limit=1", "data.crop=null", "data.scale=null", "model.pretrained_backbone=false",
         "train.batch_size=2", "train.iters=1", "train.workers=0", "train.progress=false", "train.tb_images=0"])
    record = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert record["samples_expected"] == 2 and record["samples_used"] == 1  # one window per synthetic clip
    assert record["samples_dropped"] == {"left out by data.val_limit": 1}
