"""The resample2d warp's compiled op on each device, forward and both gradients, against an
independent reference: on CUDA the CPU kernel, on the CPU the pure-PyTorch fallback.

Inputs: batch 3, flows of a few pixels with rows and columns pointing far outside the image (to the
border), contiguous, channels_last, strided (every other element of a wider buffer) and transposed
storage.  Tolerances: float32 within 2 ulps of the accumulated magnitude (the sum of the absolute
terms of each output; the CUDA grad_input adds its terms atomically, in no fixed order); float16 and
bfloat16, computed in float32 from the rounded inputs, within one unit of their own rounding more.
"""
from __future__ import annotations

import pytest
import torch

from model.warp import warp, warp_pytorch
from tests.devices import DEVICES, ulp
from tests.model.test_warp import grad_magnitudes

LAYOUTS = ["contiguous", "channels_last", "strided", "transposed"]
FAR = 3e4  # far outside any image, and finite in float16


def _inputs(dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(7)
    x = torch.randn(3, 5, 9, 11, generator=gen, dtype=torch.float64)
    f = 3 * torch.randn(3, 2, 9, 11, generator=gen, dtype=torch.float64)
    f[:, 0, :, :2] = FAR            # right of the image
    f[:, 0, :, -2:] = -FAR          # left of it
    f[:, 1, :2] = -FAR              # above it
    f[1, 1, -3:] = FAR              # below it, in one batch element
    f[2, :, 4, 5] = torch.tensor([-FAR, FAR], dtype=torch.float64)
    g = torch.randn(3, 5, 9, 11, generator=gen, dtype=torch.float64)
    return x.to(dtype), f.to(dtype), g.to(dtype)


def _arrange(t: torch.Tensor, layout: str) -> torch.Tensor:
    if layout == "channels_last":
        return t.contiguous(memory_format=torch.channels_last)
    if layout == "strided":
        wide = t.new_zeros(*t.shape[:3], 2 * t.shape[3])
        wide[..., ::2] = t
        return wide[..., ::2]
    if layout == "transposed":
        return t.transpose(2, 3).contiguous().transpose(2, 3)
    return t


def _run(x, f, g, fn):
    """Output, grad_features and grad_flow of ``fn(x, f)`` with grad_output ``g``."""
    x, f = x.detach().requires_grad_(), f.detach().requires_grad_()
    out = fn(x, f)
    out.backward(g)
    return out.detach(), x.grad, f.grad


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("device", DEVICES)
def test_warp_matches_reference(device, dtype, layout):
    x, f, g = _inputs(dtype)
    on_device = [_arrange(t.to(device), layout) for t in (x, f, g)]
    if layout != "contiguous":
        assert not on_device[0].is_contiguous()
    got = _run(*on_device, lambda a, b: warp(a, b, backend="compiled"))
    x32, f32, g32 = x.float(), f.float(), g.float()
    if device == "cuda":  # the CPU kernel
        ref = _run(x32, f32, g32, lambda a, b: warp(a, b, backend="compiled"))
    else:  # the fallback
        ref = _run(x32, f32, g32, warp_pytorch)
    mag_out = warp_pytorch(x32.abs().double(), f32.double())  # weights >= 0: the sum of |terms|
    mag_gx, mag_gf = grad_magnitudes(g32, x32, f32)
    for name, a, b, mag in zip(("output", "grad_features", "grad_flow"), got, ref, (mag_out, mag_gx, mag_gf)):
        assert a.dtype == dtype and a.device.type == device, name
        assert torch.isfinite(a).all(), name
        tol = 2 * ulp(mag, torch.float32)
        if dtype != torch.float32:
            tol = tol + ulp(b, dtype)
        err = (a.cpu().double() - b.double()).abs()
        assert (err <= tol).all(), f"{name}: {int((err > tol).sum())} elements off, worst {(err - tol).max().item():.3g}"
    if layout == "channels_last":
        assert got[0].is_contiguous(memory_format=torch.channels_last)  # the output follows the features


@pytest.mark.parametrize("device", DEVICES)
def test_far_outside_samples_the_border_pixel(device):
    """Where both components of a flow in _inputs point far outside, every corner clamps to one
    border pixel, which the forward returns exactly."""
    x, f, _ = _inputs(torch.float32)
    out = warp(x.to(device), f.to(device), backend="compiled").cpu()
    assert torch.equal(out[:, :, :2, :2], x[:, :, :1, -1:].expand(-1, -1, 2, 2))  # above and right
    assert torch.equal(out[:, :, :2, -2:], x[:, :, :1, :1].expand(-1, -1, 2, 2))  # above and left
    assert torch.equal(out[2, :, 4, 5], x[2, :, -1, 0])  # below and left
