"""Fault injection: training killed (SIGKILL) at seeded points of the forward pass, the optimiser
step, a checkpoint write and an evaluation resumes to the bit-identical weights of an uninterrupted
run; SIGTERM saves a resumable checkpoint and exits 143; a data file corrupted mid-epoch stops with
its name (exit 3). Each run is a real ``tools.train`` process (tests/engine/fault_driver.py)."""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dataset.synthetic.export import write_segnet_layout

ROOT = Path(__file__).resolve().parents[2]
DRIVER = Path(__file__).with_name("fault_driver.py")
SEED = 2024
#: phase → how many times a 6-iteration run reaches it (forward and optimiser steps, checkpoint
#: writes: 6 last.pth, then best.pth at the three evaluations, last.pth and final.pth at the end)
REACHED = {"forward": 6, "optimizer": 6, "checkpoint": 8, "evaluation": 3}
POINTS = 10

pytestmark = pytest.mark.slow


def settings(out_dir: Path) -> list[str]:
    return ["--stage", "csrnet", f"out_dir={out_dir}", "device=cpu", "threads=1", "deterministic=true",
            "data.synthetic.height=32", "data.synthetic.width=64", "data.synthetic.train_clips=1",
            "data.synthetic.val_clips=1", "data.synthetic.clip_len=5", "data.val_limit=1", "data.crop=[24,48]",
            "data.scale=[0.75,1.25]", "model.pretrained_backbone=false", "train.batch_size=2", "train.iters=6",
            "train.workers=0", "train.progress=false", "train.tb_images=0", "train.ckpt_every_iters=1",
            "train.eval_every_iters=2", "train.eval_final=false", "train.eval_first=false"]


def drive(phase: str, n: int, args: list[str]) -> subprocess.CompletedProcess:
    """One driver process in its own process group (the ``sigterm`` phase signals the whole group)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, str(DRIVER), phase, str(n), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300, start_new_session=True)


def final_state(run_dir: Path) -> dict:
    return torch.load(run_dir / "final.pth", map_location="cpu", weights_only=True)


def assert_bit_identical(a: dict, b: dict) -> None:
    assert a["iteration"] == b["iteration"]
    assert a["model"].keys() == b["model"].keys()
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    for index, state in a["optimizer"]["state"].items():
        for name, value in state.items():
            assert torch.equal(value, b["optimizer"]["state"][index][name]), (index, name)
    assert a["scheduler"]["last_epoch"] == b["scheduler"]["last_epoch"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("uninterrupted")
    proc = drive("none", 0, settings(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return final_state(out)


def kill_points() -> list[tuple[str, int]]:
    """``POINTS`` seeded (phase, n) pairs, every phase at least twice."""
    rng = random.Random(SEED)
    phases = sorted(REACHED) * 2 + rng.choices(sorted(REACHED), k=POINTS - 2 * len(REACHED))
    return [(phase, rng.randint(1, REACHED[phase])) for phase in phases]


@pytest.mark.parametrize("phase, n", kill_points())
def test_kill_and_resume_is_bit_identical(tmp_path, reference, phase, n):
    out = tmp_path / "run"
    killed = drive(phase, n, settings(out))
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert not (out / "final.pth").exists()
    resumed = drive("none", 0, settings(out))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_bit_identical(final_state(out), reference)
    assert not list(out.glob(".*.tmp"))
    if phase == "checkpoint":
        assert "left by an interrupted write" in resumed.stderr


@pytest.mark.parametrize("workers", [0, 2])
def test_sigterm_saves_a_resumable_checkpoint(tmp_path, reference, workers):
    out = tmp_path / "run"
    stopped = drive("sigterm", 3, settings(out) + [f"train.workers={workers}"])
    assert stopped.returncode == 143, stopped.stderr[-3000:]
    last_line = stopped.stderr.strip().splitlines()[-1]
    assert last_line == (f"error: stopped by SIGTERM at iteration 3 of 6; {out / 'last.pth'} holds the state: "
                         "run the same command again to resume")
    assert torch.load(out / "last.pth", weights_only=True)["iteration"] == 3
    resumed = drive("none", 0, settings(out) + [f"train.workers={workers}"])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_bit_identical(final_state(out), reference)


def test_corrupted_frame_mid_epoch_stops_with_its_name(tmp_path):
    root = tmp_path / "camvid"
    write_segnet_layout(root, "train", num_clips=1, height=32, width=48, num_frames=8)
    out = tmp_path / "run"
    args = ["--stage", "csrnet", f"out_dir={out}", "device=cpu", "threads=1", "data.name=camvid_segnet",
            f"data.root={root}", "data.val_split=null", "data.num_classes=11", "data.crop=null",
            "data.scale=null", "data.offsets=[0]", "model.pretrained_backbone=false", "train.batch_size=2",
            "train.iters=8", "train.workers=2", "train.progress=false", "train.tb_images=0",
            "--corrupt-root", str(root)]
    proc = drive("corrupt", 2, args)
    assert proc.returncode == 3, proc.stderr[-3000:]
    last_line = proc.stderr.strip().splitlines()[-1]
    assert last_line.startswith(f"error: {root / 'train'}/") and ".png: file" in last_line, last_line
    assert "Traceback" not in proc.stderr
