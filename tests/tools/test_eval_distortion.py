"""tools/eval_distortion.py: the labelled frames expected and used are printed and recorded, and a
missing label stops the run unless --allow-missing."""
from __future__ import annotations

import json

import pytest
import torch

from dataset import MissingFileError
from dataset.synthetic import write_cityscapes_layout
from engine.config import ConfigError
from model import build_evss
from tools import eval_distortion


@pytest.fixture
def args(tmp_path) -> list[str]:
    root = tmp_path / "citys"
    write_cityscapes_layout(root, "val", num_clips=3, height=32, width=64, num_frames=20)
    (root / "val.txt").unlink()
    (root / "gtFine/val/synthburg/synthburg_000000_000019_gtFine_labelTrainIds.png").unlink()
    ckpt = tmp_path / "evss.pth"
    torch.manual_seed(0)
    torch.save(build_evss(19).state_dict(), ckpt)
    return ["--dataset", "cityscapes", "--data-root", str(root), "--evss", str(ckpt), "--distances", "1",
            "--window", "2", "--threads", "1", "--no-progress", "--out", str(tmp_path / "out")]


def test_counts_printed_and_recorded_with_allow_missing(args, tmp_path, capsys):
    with pytest.raises(MissingFileError, match=r"synthburg_000000_000019_gtFine_labelTrainIds\.png: label does not "
                                               r"exist.*tools/prepare_cityscapes\.py"):
        eval_distortion.main(args)
    with pytest.warns(UserWarning, match=r"left out 1 labelled frame\(s\)"):
        results = eval_distortion.main(args + ["--allow-missing", "--limit", "1"])
    assert ("[distortion] 1 of 3 labelled frames evaluated (1 skipped: label missing; 1 skipped: left out by "
            "--limit)") in capsys.readouterr().out.splitlines()
    saved = json.loads((tmp_path / "out" / "distortion.json").read_text())
    assert (saved["samples_expected"], saved["samples_used"], saved["num_windows"]) == (3, 1, 1)
    assert saved["samples_dropped"] == results["samples_dropped"] == {"label missing": 1, "left out by --limit": 1}


def test_allow_missing_rejected_for_synthetic(tmp_path):
    with pytest.raises(ConfigError, match="--allow-missing applies to data on disk"):
        eval_distortion.main(["--dataset", "synthetic", "--evss", str(tmp_path / "x.pth"), "--allow-missing"])
