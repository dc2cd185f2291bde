"""ETC and thesis temporal losses on hand-made tensors (values computed by hand or with OpenCV)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from model.blocks import IMAGENET_STD
from model.temporal_losses import (
    change_loss,
    flow_warping_loss,
    gaussian_blur,
    inter_frame_affinity,
    motion_loss,
    occlusion_mask,
    pairwise_consistency,
    pixelwise_kd,
    smoothing_loss,
)

B, C, H, W = 2, 3, 5, 7


def shift_flow(dx: float, b: int = B, h: int = H, w: int = W) -> torch.Tensor:
    flow = torch.zeros(b, 2, h, w)
    flow[:, 0] = dx
    return flow


def shifted(x: torch.Tensor) -> torch.Tensor:
    """By hand: what warping ``x`` by a flow of +1 px in x gives (column x ← column min(x+1, W−1))."""
    index = torch.clamp(torch.arange(x.shape[-1]) + 1, max=x.shape[-1] - 1)
    return x[..., index]


# ---------------------------------------------------------------------------------------------- ETC
def test_occlusion_mask_values():
    frame_t = torch.full((1, 3, H, W), 0.5)
    frame_next = frame_t.clone()
    frame_next[:, 0] += 0.1                           # red brighter by 0.1 everywhere
    mask = occlusion_mask(frame_t, frame_next, shift_flow(1.0, 1))
    assert mask.shape == (1, 1, H, W)
    torch.testing.assert_close(mask, torch.full_like(mask, math.exp(-0.1 / IMAGENET_STD[0])))
    same = occlusion_mask(frame_t, frame_t, shift_flow(1.0, 1))
    torch.testing.assert_close(same, torch.ones_like(same))


def test_occlusion_mask_finds_the_disoccluded_column():
    torch.manual_seed(0)
    frame_next = torch.rand(1, 3, H, W)
    frame_t = shifted(frame_next)                      # frame t+1 is frame t moved one pixel left
    frame_t[..., -1] = torch.rand(1, 3, H)             # what enters at the right border is new
    mask = occlusion_mask(frame_t, frame_next, shift_flow(1.0, 1))
    torch.testing.assert_close(mask[..., :-1], torch.ones_like(mask[..., :-1]))
    assert (mask[..., -1] < 1).all()


def test_motion_loss_zero_when_consistent_under_the_flow():
    torch.manual_seed(0)
    logits_next = torch.randn(B, C, H, W)
    logits_t = shifted(logits_next)
    loss = motion_loss(logits_t, logits_next, shift_flow(1.0), torch.ones(B, 1, H, W))
    assert loss.item() == pytest.approx(0.0, abs=1e-12)
    # the same predictions under zero flow are not consistent
    assert motion_loss(logits_t, logits_next, shift_flow(0.0), torch.ones(B, 1, H, W)).item() > 0.1


def test_motion_loss_masked_where_occluded():
    torch.manual_seed(0)
    logits_next = torch.randn(B, C, H, W)
    logits_t = shifted(logits_next)
    logits_t[0, :, 2, 3] += torch.tensor([1.0, -2.0, 3.0])     # inconsistent at one pixel
    mask = torch.ones(B, 1, H, W)
    full = motion_loss(logits_t, logits_next, shift_flow(1.0), mask)
    assert full.item() == pytest.approx((1 + 4 + 9) / (B * C * H * W), rel=1e-5)
    mask[0, 0, 2, 3] = 0.0
    assert motion_loss(logits_t, logits_next, shift_flow(1.0), mask).item() == pytest.approx(0.0, abs=1e-12)
    mask[0, 0, 2, 3] = 0.5                             # ETC masks both sides: (m·a − m·b)² = m²(a − b)²
    assert motion_loss(logits_t, logits_next, shift_flow(1.0), mask).item() == pytest.approx(
        0.25 * 14 / (B * C * H * W), rel=1e-5)


def test_gradients_reach_the_network_not_the_flow_estimator():
    torch.manual_seed(0)
    net = nn.Conv2d(3, C, 3, padding=1)
    estimator = nn.Conv2d(6, 2, 3, padding=1)
    frame_t, frame_next = torch.rand(B, 3, H, W), torch.rand(B, 3, H, W)
    flow = estimator(torch.cat([frame_t, frame_next], 1))      # a flow that carries a graph
    mask = occlusion_mask(frame_t, frame_next, flow)
    loss = motion_loss(net(frame_t), net(frame_next), flow, mask)
    loss = loss + flow_warping_loss(net(frame_t), net(frame_next), flow)
    loss.backward()
    assert net.weight.grad is not None and net.weight.grad.abs().sum() > 0
    assert estimator.weight.grad is None and estimator.bias.grad is None
    assert not mask.requires_grad


def test_pixelwise_kd_hand_value():
    s = torch.tensor([1.0, 0.0]).view(1, 2, 1, 1)
    t = torch.tensor([0.0, 2.0]).view(1, 2, 1, 1)
    p = [math.exp(1) / (math.exp(1) + 1), 1 / (math.exp(1) + 1)]
    q = [1 / (1 + math.exp(2)), math.exp(2) / (1 + math.exp(2))]
    kl = sum(qi * math.log(qi / pi) for pi, qi in zip(p, q))
    assert pixelwise_kd(s, t).item() == pytest.approx(kl / 2, rel=1e-5)   # element-wise mean, C = 2
    assert pixelwise_kd(t, t).item() == pytest.approx(0.0, abs=1e-7)


def test_pixelwise_kd_gradient_only_to_the_student():
    s = torch.randn(1, 4, 3, 3, requires_grad=True)
    t = torch.randn(1, 4, 3, 3, requires_grad=True)
    pixelwise_kd(s, t, temperature=2.0).backward()
    assert s.grad is not None and t.grad is None


def test_inter_frame_affinity_hand_value():
    a = torch.tensor([[1.0, 0.0], [0.0, 2.0]]).view(1, 2, 1, 2)   # positions (1, 0), (0, 2)
    b = torch.tensor([[3.0, 1.0], [4.0, 1.0]]).view(1, 2, 1, 2)   # positions (3, 4), (1, 1)
    expected = torch.tensor([[3 / 5, 1 / math.sqrt(2)], [4 / 5, 1 / math.sqrt(2)]])
    torch.testing.assert_close(inter_frame_affinity(a, b)[0], expected)


def test_pairwise_consistency_zero_for_the_same_structure():
    torch.manual_seed(0)
    t0, t1 = torch.randn(B, C, 4, 4), torch.randn(B, C, 4, 4)
    scale = torch.rand(B, 1, 4, 4) + 0.5                       # cosine ignores per-position scale
    assert pairwise_consistency(t0 * scale, t1 * 2, t0, t1).item() == pytest.approx(0.0, abs=1e-10)
    assert pairwise_consistency(t1, t0, t0, t1).item() > 1e-3
    assert pairwise_consistency(t1, t0, t0, t1, pool=2).item() > 0


# ---------------------------------------------------------------------------------------------- thesis
def test_change_loss_hand_value():
    prev = torch.tensor([0.0, 3.0, 1.0]).view(1, 3, 1, 1)     # class 1
    cur = torch.tensor([2.0, 1.0, 0.0]).view(1, 3, 1, 1)
    expected = -math.log(math.exp(1) / (math.exp(2) + math.exp(1) + 1))
    assert change_loss(cur, prev).item() == pytest.approx(expected, rel=1e-6)


def test_gaussian_blur_matches_opencv():
    cv2 = pytest.importorskip("cv2")
    rng = np.random.default_rng(0)
    maps = rng.random((1, 2, 30, 60)).astype(np.float32)
    ours = gaussian_blur(torch.from_numpy(maps), (25, 51), (10.0, 20.0)).numpy()
    for c in range(2):
        ref = cv2.GaussianBlur(maps[0, c], (51, 25), sigmaX=20, sigmaY=10)
        np.testing.assert_allclose(ours[0, c], ref, atol=1e-5)
    with pytest.raises(ValueError, match="too large"):
        gaussian_blur(torch.zeros(1, 1, 10, 10), (25, 51), (10.0, 20.0))


def test_smoothing_loss_uniform_and_preference():
    c, h, w = 4, 30, 60
    flat = torch.zeros(1, c, h, w)
    assert smoothing_loss(flat, flat).item() == pytest.approx(c * c, rel=1e-5)   # 1 / mean(1/C · 1/C)
    block = torch.zeros(1, c, h, w)
    block[:, 1, 10:20, 20:40] = 5.0
    moved = torch.roll(block, 20, dims=3)
    assert smoothing_loss(block, block) < smoothing_loss(moved, block)


def test_flow_warping_loss_consistent_masked_and_hand_value():
    prev = torch.zeros(1, C, H, W)
    classes = torch.arange(W) % C
    prev[0, classes, :, torch.arange(W)] = 10.0               # column x has class x % C
    flow = shift_flow(-1.0, 1)                                # pixel x at t was at x − 1 at t−1
    target = classes[torch.clamp(torch.arange(W) - 1, min=0)]
    cur = torch.zeros(1, C, H, W)
    cur[0, target, :, torch.arange(W)] = 50.0
    assert flow_warping_loss(cur, prev, flow).item() == pytest.approx(0.0, abs=1e-6)
    cur[0, :, :, 0] = 0.0                                    # column 0 came from outside: ignored,
    cur[0, (target[0] + 1) % C, :, 0] = 50.0                 # so a wrong class there costs nothing
    assert flow_warping_loss(cur, prev, flow).item() == pytest.approx(0.0, abs=1e-6)
    logits = torch.randn(1, C, H, W)
    ref = F.cross_entropy(logits[..., 1:], target[1:].view(1, 1, W - 1).expand(1, H, W - 1))
    assert flow_warping_loss(logits, prev, flow).item() == pytest.approx(ref.item(), rel=1e-5)


# ---------------------------------------------------------------------------------------------- training
def test_etc_training_iterations(tmp_path):
    """A few stage-1 iterations with every ETC term on tiny synthetic pairs (teacher = a CSRNet file)."""
    from model import CSRNet
    from engine.stages import train

    teacher = tmp_path / "teacher.pth"
    torch.manual_seed(0)
    torch.save(CSRNet(19).state_dict(), teacher)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        summary = train("csrnet", None, [
            f"out_dir={tmp_path / 'run'}", "device=cpu", "data.synthetic.height=32", "data.synthetic.width=64",
            "data.synthetic.train_clips=1", "data.synthetic.val_clips=1", "data.synthetic.clip_len=3",
            "data.val_limit=1", "data.crop=[32,48]", "data.scale=null", "train.batch_size=2", "train.iters=2",
            "train.workers=0", "train.progress=false", "train.log_every=1", "train.tb_images=0",
            "model.pretrained_backbone=false", "etc.motion_weight=0.4", "etc.distill_weight=1.0",
            "etc.pair_weight=1.0", f"etc.teacher_checkpoint={teacher}"])
    finally:
        torch.set_num_threads(threads)
    assert summary["iteration"] == 2 and not summary["stopped_early"]
    assert 0.0 <= summary["metrics"]["miou"] <= 1.0


def test_etc_distillation_without_teacher_is_a_config_error(tmp_path):
    from engine.config import ConfigError
    from engine.stages import train

    with pytest.raises(ConfigError, match="teacher_checkpoint"):
        train("csrnet", None, [f"out_dir={tmp_path}", "etc.distill_weight=1.0"])
