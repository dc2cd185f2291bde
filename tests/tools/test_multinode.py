"""run/train_citys.sh on two "nodes" of this machine: two launches with --nnodes 2 --node-rank 0/1 and a
rendezvous on 127.0.0.1, one gloo process each, train stage 1 on a synthetic tree in the Cityscapes
layout to the weights of one process with the same global batch (2 × batch 1 == 1 × batch 2,
BatchNorm frozen, as tests/engine/test_stages.py's two-process test)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
import torch

from model import CSRNet
from tests.devices import free_port
from tests.engine.test_stages import ROOT, assert_same_weights, load

SETTINGS = ["device=cpu", "train.iters=2", "train.freeze_bn=true", "train.workers=0", "train.progress=false",
            "train.eval_first=false", "train.eval_final=false", "train.eval_every=0", "train.tb_images=0",
            "data.flip=0", "data.crop=null", "data.scale=null", "model.pretrained_backbone=false",
            "deterministic=true", "optim.lr=1e-3", "optim.schedule_unit=iter"]


def _environment() -> dict:
    """This process's environment without what would make a launch distributed or a SLURM task."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    for key in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "NUM_GPUS"):
        env.pop(key, None)
    return dict(env, OMP_NUM_THREADS="1")


@pytest.mark.slow
def test_two_nodes_match_one_process(tmp_path):
    data = tmp_path / "cityscapes"
    subprocess.run([sys.executable, "-m", "dataset.synthetic", "--out", str(data), "--layout", "cityscapes",
                    "--num-clips", "2", "--frames", "20", "--height", "32", "--width", "64"],
                   cwd=ROOT, check=True, capture_output=True)
    script = ["bash", "run/train_citys.sh", "--stage", "csrnet", "--gpus", "1", "--data-root", str(data)]
    env = _environment()
    single = subprocess.run(script + ["--out", str(tmp_path / "single"), "train.batch_size=2"] + SETTINGS,
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert single.returncode == 0, single.stderr[-4000:]

    endpoint = f"127.0.0.1:{free_port()}"
    nodes = [subprocess.Popen(script + ["--nnodes", "2", "--node-rank", str(rank), "--rdzv-endpoint", endpoint,
                                        "--out", str(tmp_path / "nodes"), "train.batch_size=1"] + SETTINGS,
                              cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              start_new_session=True)
             for rank in (0, 1)]
    try:
        logs = [node.communicate(timeout=600)[0] for node in nodes]
    finally:
        for node in nodes:  # a node left waiting at the rendezvous, with its torchrun and workers
            if node.poll() is None:
                os.killpg(node.pid, signal.SIGKILL)
    for rank, (node, log) in enumerate(zip(nodes, logs)):
        assert node.returncode == 0, f"node {rank}:\n{log[-4000:]}"
        assert "on each of 2 nodes" in log
    assert "2 process(es)" in logs[0]  # the trainer's line, from global rank 0 on node 0

    a, b = load(tmp_path / "single" / "csrnet" / "final.pth"), load(tmp_path / "nodes" / "csrnet" / "final.pth")
    assert a["iteration"] == b["iteration"] == 2
    torch.manual_seed(666)  # the trainer's seed: the initial weights
    init = CSRNet(19).state_dict()
    assert max((a["model"][k] - v).abs().max().item() for k, v in init.items() if v.is_floating_point()) > 1e-4
    assert_same_weights(a["model"], b["model"], atol=2e-5, rtol=1e-4)
