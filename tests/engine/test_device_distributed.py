"""DistributedDataParallel over NCCL (CUDA only; gloo on the CPU is tests/engine/test_stages.py's
two-process test): world size 1 in this process, where DDP's gradients are the plain model's, and,
where two GPUs exist, two torchrun processes × batch 1 against one process × batch 2."""
from __future__ import annotations

import copy
import os
import subprocess
import sys

import pytest
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader

from engine.stages import resolve_config
from engine.stages.evss import EVSSStage
from engine.trainer import set_train_mode, to_device
from tests.devices import free_port, full_fp32
from tests.engine.test_stages import ROOT, assert_same_weights, load, tiny

pytestmark = pytest.mark.cuda


def test_nccl_ddp_world_size_one_gives_the_plain_models_gradients(tmp_path):
    """Stage 2's model (CSRNet frozen: unused parameters) and step, DDP-wrapped as the Trainer does."""
    cfg = resolve_config("evss", None, tiny(tmp_path, clip_len=4) + ["device=cuda", "data.offsets=[-1,1]",
                                                                     "data.crop=null", "model.allow_random_csrnet=true"])
    stage = EVSSStage(cfg)
    device = torch.device("cuda", 0)
    torch.manual_seed(0)
    plain = stage.build_model().to(device)
    batch = to_device(next(iter(DataLoader(stage.train_dataset(), batch_size=2))), device)
    dist.init_process_group("nccl", init_method=f"tcp://127.0.0.1:{free_port()}", rank=0, world_size=1,
                            device_id=device)
    try:
        wrapped = nn.parallel.DistributedDataParallel(copy.deepcopy(plain), device_ids=[0], find_unused_parameters=True)
        with full_fp32():
            for model in (plain, wrapped):
                set_train_mode(model, freeze_bn=False)
                stage.train_step(model, batch)["loss"].backward()
    finally:
        dist.destroy_process_group()
    pairs = list(zip(plain.named_parameters(), wrapped.module.parameters()))
    assert sum(p.grad is not None for (_, p), _ in pairs) > 0
    for (name, p), q in pairs:
        assert (p.grad is None) == (q.grad is None), name
        if p.grad is not None:  # the warp's CUDA backward adds atomically: rounding-level differences
            torch.testing.assert_close(q.grad, p.grad, rtol=1e-4, atol=1e-6 * p.grad.abs().max().item(),
                                       msg=lambda m: f"{name}: {m}")


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA devices")
def test_nccl_two_processes_match_single_process(tmp_path):
    """As the gloo test: 2 processes × batch 1 == 1 process × batch 2 (BatchNorm frozen), full float32."""
    common = ["device=cuda", "train.iters=2", "train.freeze_bn=true", "data.flip=0", "data.crop=null",
              "data.scale=null", "data.synthetic.val_clips=0", "model.pretrained_backbone=false", "optim.lr=1e-3",
              "optim.schedule_unit=iter"]
    env = dict(os.environ, OMP_NUM_THREADS="1", NVIDIA_TF32_OVERRIDE="0")
    for key in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        env.pop(key, None)
    train = [sys.executable, "-m", "tools.train", "--stage", "csrnet"]
    ddp = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"] + train[1:]
    for cmd, name, batch in ((train, "single", 2), (ddp, "ddp", 1)):
        proc = subprocess.run(cmd + tiny(tmp_path / name, clip_len=5, batch=batch) + common, cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-4000:]
    assert "2 process(es)" in proc.stderr
    a, b = load(tmp_path / "single" / "final.pth"), load(tmp_path / "ddp" / "final.pth")
    assert a["iteration"] == b["iteration"] == 2
    assert_same_weights(a["model"], b["model"], atol=1e-4, rtol=1e-3)
