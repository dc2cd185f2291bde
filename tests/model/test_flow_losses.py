"""Stage-1b losses and flow-resolution conversions on hand-made inputs."""
from __future__ import annotations

import torch

from model.flow_losses import charbonnier, flow_to_full, flow_to_quarter, smoothness, ssim_lite


def test_resolution_conversions_scale_values_with_the_grid():
    flow = torch.zeros(1, 2, 16, 24)
    flow[:, 0], flow[:, 1] = 8.0, -4.0  # a uniform motion in full-resolution pixels
    quarter = flow_to_quarter(flow, (4, 6))
    assert torch.allclose(quarter[:, 0], torch.full((1, 4, 6), 2.0))
    assert torch.allclose(quarter[:, 1], torch.full((1, 4, 6), -1.0))
    assert torch.allclose(flow_to_full(quarter, (15, 23)), flow[..., :15, :23])


def test_ssim_and_smoothness_vanish_on_perfect_inputs():
    image = torch.rand(1, 3, 12, 12, generator=torch.Generator().manual_seed(0))
    assert ssim_lite(image, image).abs().max() < 1e-4
    assert ssim_lite(image, 1 - image).mean() > 0.2
    uniform = torch.ones(1, 2, 6, 6)
    assert smoothness(uniform, image[..., :6, :6], 10.0) == 0
    ramp = torch.arange(6.0).expand(1, 2, 6, 6)
    assert torch.allclose(smoothness(ramp, torch.zeros(1, 3, 6, 6), 10.0), torch.tensor(1.0))


def test_charbonnier_is_robust():
    x = torch.tensor([0.0, 1.0, 100.0])
    assert torch.allclose(charbonnier(x), torch.tensor([0.01 ** 0.4, 1.01 ** 0.4, 100.01 ** 0.4]))
