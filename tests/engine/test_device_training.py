"""Stage 2 (EVSS: FlowNet + CoNet, CSRNet frozen) trained for 20 iterations by the Trainer on each
device and precision it supports: fp32 on the CPU (the Trainer's AMP is CUDA-only) and on CUDA, bf16
autocast, and fp16 autocast with the grad scaler. Every loss is finite and the loss falls: the mean of
the last five iterations is below the mean of the first five (two synthetic samples, seen again and
again)."""
from __future__ import annotations

import pytest
import torch

from engine import distributed
from engine.stages import resolve_config
from engine.stages.evss import EVSSStage
from engine.trainer import Trainer

pytestmark = pytest.mark.usefixtures("one_thread")

LEGS = [pytest.param("cpu", "none", id="cpu-fp32"),
        pytest.param("cuda", "none", marks=pytest.mark.cuda, id="cuda-fp32"),
        pytest.param("cuda", "bf16", marks=pytest.mark.cuda, id="cuda-bf16"),
        pytest.param("cuda", "fp16", marks=pytest.mark.cuda, id="cuda-fp16")]


class LossRecorder(EVSSStage):
    """Stage 2 keeping every iteration's total loss (detached, on the device: no synchronisation)."""

    def __init__(self, cfg: dict):
        super().__init__(cfg)
        self.losses: list[torch.Tensor] = []

    def train_step(self, model, batch):
        out = super().train_step(model, batch)
        self.losses.append(out["loss"].detach())
        return out


@pytest.mark.slow
@pytest.mark.parametrize("device, amp", LEGS)
def test_stage2_loss_is_finite_and_falls(tmp_path, device, amp):
    cfg = resolve_config("evss", None, [
        f"out_dir={tmp_path}", f"device={device}", f"train.amp={amp}", "train.iters=20", "train.batch_size=2",
        "train.workers=0", "train.progress=false", "train.log_every=0", "train.tb_images=0", "train.eval_final=false",
        "data.synthetic.height=32", "data.synthetic.width=64", "data.synthetic.train_clips=1",
        "data.synthetic.val_clips=0", "data.synthetic.clip_len=4", "data.offsets=[-1,1]", "data.crop=null",
        "data.scale=null", "data.flip=0", "optim.lr=1e-3", "optim.schedule_unit=iter",
        "model.allow_random_csrnet=true"])
    stage = LossRecorder(cfg)
    trainer = Trainer(cfg, stage)
    try:
        summary = trainer.fit()
    finally:
        distributed.cleanup()
    assert summary["iteration"] == 20 and trainer.dist.device.type == device
    assert trainer.scaler.is_enabled() == (amp == "fp16")
    losses = torch.stack(stage.losses).float().cpu()
    assert len(losses) == 20 and torch.isfinite(losses).all(), losses
    assert losses[-5:].mean() < losses[:5].mean(), losses
