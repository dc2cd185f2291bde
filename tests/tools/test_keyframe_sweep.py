"""tools/keyframe_sweep.py: end to end on tiny synthetic clips (the documented JSON and PNG; fixed-k
scores equal to the project's stream evaluation of the same net), on a CamVid SegNet layout with a
checkpoint, and the user errors."""
from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dataset.synthetic import write_segnet_layout
from engine.compare import comparison_clips
from engine.config import ConfigError
from engine.flow_estimators import OpenCVFlow
from engine.predictors import Predictor
from engine.stream_eval import StreamEvaluator, evaluate_clips
from model import build_evss
from tools import keyframe_sweep

ROOT = Path(__file__).resolve().parents[2]
TINY = ["--dataset", "synthetic", "--split", "test", "--random-weights", "--clips", "2", "--clip-len", "8",
        "--height", "32", "--width", "64", "--horizon", "8", "--ks", "1,2,3", "--budgets", "1/2,0.25",
        "--threads", "1", "--no-progress", "--device", "cpu"]
ROW_KEYS = {"keyframe_fraction", "miou", "tc", "ms_per_frame"}


class EveryK(Predictor):
    """The prediction-only stream with a keyframe every k frames (the reference of the fixed rows)."""

    def __init__(self, net, k: int):
        self.net, self.k = net, k
        self.reset()

    def reset(self) -> None:
        self.stream, self.t = self.net.stream(pred_only=True), 0

    def step(self, frame: torch.Tensor) -> torch.Tensor:
        out = self.stream.step(frame, keyframe=self.t % self.k == 0)
        self.t += 1
        return out["pred"]


@pytest.fixture
def one_thread_tools():
    """Tiny tensors: one intra-op thread is faster, and the tool sets it anyway."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.slow
def test_synthetic_sweep_writes_the_documented_json_and_plot(tmp_path, one_thread_tools):
    out = tmp_path / "sweep.json"
    returned = keyframe_sweep.main(TINY + ["--json", str(out)])
    results = json.loads(out.read_text())
    assert results == json.loads(json.dumps(returned))
    assert (tmp_path / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert {"fixed", "adaptive", "budget", "oracle", "summary", "settings", "clips", "frames", "image_size",
            "step_times", "env", "git_revision", "date", "command"} <= set(results)
    assert (results["clips"], results["frames"], results["image_size"]) == (2, 16, [32, 64])
    assert results["command"].startswith("python -m tools.keyframe_sweep --dataset synthetic")
    times = results["step_times"]
    assert times["key_ms"] > 0 and times["propagate_ms"] > 0 and set(times["signal_ms"]) >= {"mean"}

    fixed = results["fixed"]
    assert [r["k"] for r in fixed] == [1, 2, 3] and all(ROW_KEYS <= set(r) for r in fixed)
    for row in fixed:
        assert row["keyframe_fraction"] == pytest.approx(math.ceil(8 / row["k"]) / 8)
        assert row["ms_per_frame"] == pytest.approx((row["keys"] * times["key_ms"] + row["propagated"]
                                                     * times["propagate_ms"]) / 16)
    assert len(results["adaptive"]) == 3 and all(ROW_KEYS | {"threshold"} <= set(r) for r in results["adaptive"])
    assert [r["target"] for r in results["budget"]] == [0.5, 0.25]
    assert all(ROW_KEYS <= set(r) for r in results["budget"])
    oracle_fractions = {r["keyframe_fraction"] for r in results["oracle"]}
    assert all(r["keyframe_fraction"] in oracle_fractions for r in fixed)
    assert all({"keyframe_fraction", "miou"} <= set(r) for r in results["oracle"])
    assert [r["k"] for r in results["summary"]["at_fixed"]] == [1, 2, 3]

    # the fixed rows are what the project's stream evaluation measures for the same net and clips
    torch.manual_seed(0)
    net = build_evss(19).eval()
    evaluator = StreamEvaluator({f"k{k}": EveryK(net, k) for k in (1, 2, 3)}, 19, 255, OpenCVFlow("dis"),
                                fb_check=False)
    clips = comparison_clips("synthetic", "test", num_clips=2, clip_len=8, height=32, width=64)
    reference = evaluate_clips(evaluator, clips, "cpu").results()
    for row in fixed:
        assert row["miou"] == pytest.approx(100 * reference[f"k{row['k']}"]["miou"], rel=1e-9)
        assert row["tc"] == pytest.approx(100 * reference[f"k{row['k']}"]["tc_etc"], rel=1e-9)


@pytest.mark.slow
def test_camvid_segnet_layout_with_a_checkpoint(tmp_path, one_thread_tools):
    write_segnet_layout(tmp_path / "camvid", "val", num_clips=1, height=32, width=48, num_frames=6)
    torch.manual_seed(1)
    torch.save({"model": build_evss(11).state_dict()}, tmp_path / "evss.pth")
    results = keyframe_sweep.main(["--dataset", "camvid", "--data-root", str(tmp_path / "camvid"), "--checkpoint",
                                   str(tmp_path / "evss.pth"), "--json", str(tmp_path / "out.json"), "--plot",
                                   str(tmp_path / "figure.png"), "--horizon", "6", "--ks", "1,3", "--budgets", "0.5",
                                   "--threads", "1", "--no-progress", "--device", "cpu"])
    assert (results["clips"], results["frames"], results["labelled_frames"]) == (1, 6, 6)
    assert results["settings"]["num_classes"] == 11 and results["settings"]["ignore_index"] == 11
    assert (tmp_path / "figure.png").is_file() and not (tmp_path / "out.png").exists()


@pytest.mark.parametrize("extra, message", [
    (["--dataset", "synthetic"], "--checkpoint is required for --dataset synthetic (or --random-weights"),
    (["--dataset", "camvid", "--checkpoint", "x.pth"], "--dataset camvid needs --data-root"),
    (["--dataset", "camvid", "--data-root", "d", "--random-weights"], "--random-weights is for synthetic"),
    (["--dataset", "synthetic", "--random-weights", "--checkpoint", "x.pth"], "either --checkpoint or"),
    (["--dataset", "synthetic", "--random-weights", "--horizon", "1"], "--horizon must be >= 2"),
    (["--dataset", "synthetic", "--random-weights", "--ks", "5,50"], "--ks: every value must lie in [1, 48]"),
    (["--dataset", "synthetic", "--random-weights", "--ks", "2.5"], "--ks: expected comma-separated integers"),
    (["--dataset", "synthetic", "--random-weights", "--budgets", "0,0.5"], "--budgets: every value must lie in (0, 1]"),
    (["--dataset", "synthetic", "--random-weights", "--split", "nope"], "--dataset synthetic: split must be"),
])
def test_user_errors(tmp_path, extra, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        keyframe_sweep.main(extra + ["--json", str(tmp_path / "x.json")])
    assert not (tmp_path / "x.json").exists()


@pytest.mark.slow
def test_the_command_line_reports_one_error_line(tmp_path):
    done = subprocess.run([sys.executable, "-m", "tools.keyframe_sweep", "--dataset", "camvid", "--checkpoint",
                           "x.pth", "--json", str(tmp_path / "x.json")], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr == "error: --dataset camvid needs --data-root DIR\n"
