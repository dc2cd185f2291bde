"""engine.demo end to end on a tiny synthetic set: the three stages train, the run is evaluated,
timed and reported, and a second run reuses the stages."""
from __future__ import annotations

import json

import pytest

from engine.demo import DEMO_STAGES, run_demo

TINY = ["data.synthetic.train_clips=1", "data.synthetic.val_clips=1", "data.synthetic.clip_len=11",
        "data.synthetic.height=32", "data.synthetic.width=48", "train.iters=2", "train.batch_size=2",
        "train.eval_every_iters=null", "train.ckpt_every_iters=null", "train.progress=false"]


@pytest.mark.slow
def test_demo_trains_evaluates_and_reports(tmp_path, capsys):
    overrides = {stage: list(TINY) for stage in DEMO_STAGES}
    summary = run_demo(tmp_path, threads=1, overrides=overrides)
    report = json.loads((tmp_path / "report.json").read_text())
    assert summary["report"] == str(tmp_path / "report.json")
    assert summary["miou_evss_d9"] == report["results"]["miou"]["9"] and 0 <= summary["miou_evss_d9"] <= 1
    assert report["results"]["num_samples"] == 1 and set(report["results"]["miou"]) == {str(d) for d in range(1, 10)}
    assert report["speed"]["size"] == [32, 48] and report["speed"]["nonkey_ms"] > 0
    assert all(report["train_seconds"][s] > 0 for s in DEMO_STAGES)
    for name in ("report.md", "miou_vs_distance.png", "clip.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    capsys.readouterr()
    again = run_demo(tmp_path, threads=1, overrides=overrides)
    printed = capsys.readouterr().out
    assert all(f"[demo] {s}: reusing" in printed for s in DEMO_STAGES)
    assert again["miou_evss_d9"] == summary["miou_evss_d9"]
