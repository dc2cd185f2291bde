"""engine/compare.py: a registered method built from its checkpoint streams as the net's own clip path."""
from __future__ import annotations

import pytest
import torch

from dataset.synthetic import SyntheticVideoDataset
from engine.compare import METHODS, Context
from model import build_davss


@pytest.mark.slow
def test_davss_k5_from_a_checkpoint_streams_keyframes_every_5_frames(tmp_path):
    torch.manual_seed(0)
    net = build_davss(19, keyframe="csrnet").eval()
    path = tmp_path / "davss.pth"
    torch.save(net.state_dict(), path)
    ctx = Context(19, torch.device("cpu"), {"davss": path}.__getitem__)
    method = METHODS["davss_k5"]
    assert method.checkpoints == ("davss",)
    predictor = method.build(ctx)
    frames = SyntheticVideoDataset("val", "eval", num_clips=1, clip_len=7, height=32, width=64, window=7)[0]["frames"]
    predictor.reset()
    preds = [predictor.step(frames[t:t + 1]) for t in range(7)]
    assert all(p.shape == (1, 32, 64) and p.dtype == torch.int64 for p in preds)
    # frame 3 is propagated from the keyframe 0, frame 6 from the keyframe 5 (the net's own clip path)
    assert torch.equal(preds[3], net.segment_clip([frames[t:t + 1] for t in range(4)])["pred"])
    assert torch.equal(preds[6], net.segment_clip([frames[5:6], frames[6:7]])["pred"])
    assert torch.equal(preds[5], net.segment_clip([frames[5:6]])["pred"])
