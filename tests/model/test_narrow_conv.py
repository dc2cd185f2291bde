"""Narrow 3×3 convolutions (few output channels) as a matrix product and shifted sums: against a float64
direct convolution, hand-computed cases, the fallbacks, and where the optimised network uses them."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from model import build_evss
from model.inference import optimize_for_inference
from model.narrow_conv import NarrowConv2d, is_narrow_eligible, narrow_conv3x3


def _taps(weight: torch.Tensor) -> torch.Tensor:
    return weight.permute(1, 2, 3, 0).reshape(weight.shape[1], 9 * weight.shape[0]).contiguous()


# (b, c, k, h, w): one pixel, one row, one column, batches, 1 to 4 output channels
SHAPES = [(1, 16, 2, 1, 1), (1, 20, 1, 1, 9), (2, 33, 3, 7, 1), (3, 74, 2, 13, 17), (1, 8, 4, 6, 5)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("with_bias", [True, False])
def test_matches_float64_direct_convolution(shape, with_bias):
    b, c, k, h, w = shape
    g = torch.Generator().manual_seed(sum(shape))
    x = torch.randn(b, c, h, w, generator=g, dtype=torch.float64)
    weight = torch.randn(k, c, 3, 3, generator=g, dtype=torch.float64) / (3 * c ** 0.5)
    bias = torch.randn(k, generator=g, dtype=torch.float64) if with_bias else None
    ref = F.conv2d(x, weight, bias, padding=1)
    xf = x.float().contiguous(memory_format=torch.channels_last)
    out = narrow_conv3x3(xf, _taps(weight.float()), None if bias is None else bias.float())
    assert out.shape == ref.shape and out.dtype == torch.float32
    assert out.is_contiguous(memory_format=torch.channels_last)
    assert (out.double() - ref).abs().max() <= 1e-5 * max(1.0, ref.abs().max().item())
    assert torch.allclose(narrow_conv3x3(x, _taps(weight), bias), ref, rtol=0, atol=1e-12)  # NCHW input, float64


@pytest.mark.parametrize("split", [(48, 24, 2), (1, 73), (74,)])
def test_parts_of_a_concatenation_match_float64_convolution_of_the_whole(split):
    g = torch.Generator().manual_seed(len(split))
    parts = [torch.randn(2, c, 11, 14, generator=g, dtype=torch.float64) for c in split]
    weight = torch.randn(2, 74, 3, 3, generator=g, dtype=torch.float64) / 25
    bias = torch.randn(2, generator=g, dtype=torch.float64)
    ref = F.conv2d(torch.cat(parts, 1), weight, bias, padding=1)
    inputs = [p.float().contiguous(memory_format=torch.channels_last) for p in parts]
    inputs[-1] = inputs[-1].contiguous()  # a part in the NCHW layout is read as well (through a copy)
    with FlopCounterMode(display=False) as flops:
        out = narrow_conv3x3(inputs, _taps(weight.float()), bias.float())
    assert (out.double() - ref).abs().max() <= 1e-5 * max(1.0, ref.abs().max().item())
    assert flops.get_total_flops() == 2 * 2 * 11 * 14 * 74 * 9 * 2  # the direct convolution's, as the benchmark counts
    conv = nn.Conv2d(74, 2, 3, padding=1).double().requires_grad_(False)
    conv.weight.copy_(weight)
    conv.bias.copy_(bias)
    assert torch.allclose(NarrowConv2d(conv)(parts), ref, rtol=0, atol=1e-12)  # float64: F.conv2d of the cat
    with pytest.raises(ValueError, match="do not concatenate to the filter's 74 channels"):
        narrow_conv3x3(inputs[:-1] if len(inputs) > 1 else [inputs[0][:, :70]], _taps(weight.float()), None)


def test_hand_computed_neighbour_counts():
    # all-ones image and filter: each output counts its in-image 3×3 neighbours (4 at corners, 6 on
    # edges, 9 inside) times the 16 input channels, plus the bias
    out = narrow_conv3x3(torch.ones(1, 16, 3, 4), torch.ones(16, 9), torch.tensor([0.5]))
    expected = torch.tensor([[4, 6, 6, 4], [6, 9, 9, 6], [4, 6, 6, 4]], dtype=torch.float32) * 16 + 0.5
    assert torch.equal(out[0, 0], expected)


def test_module_eligibility_and_fallbacks():
    assert is_narrow_eligible(nn.Conv2d(74, 2, 3, padding=1))
    for conv in (nn.Conv2d(74, 8, 3, padding=1), nn.Conv2d(74, 2, 1), nn.Conv2d(74, 2, 3, stride=2, padding=1),
                 nn.Conv2d(8, 2, 3, padding=1), nn.Conv2d(74, 2, 3, padding=2, dilation=2)):
        assert not is_narrow_eligible(conv), conv
    with pytest.raises(ValueError, match="at most 4 output channels"):
        NarrowConv2d(nn.Conv2d(16, 8, 3, padding=1))
    conv = nn.Conv2d(32, 2, 3, padding=1).requires_grad_(False)
    narrow = NarrowConv2d(conv)
    x = torch.randn(1, 32, 9, 10)
    assert (narrow(x) - conv(x)).abs().max() <= 1e-5
    for other in (x.double(), x.bfloat16()):  # other dtypes (and GPUs) take F.conv2d with the original filter
        assert torch.equal(NarrowConv2d(conv.to(other.dtype))(other), conv.to(other.dtype)(other))
    assert torch.equal(torch.compile(narrow, backend="aot_eager", fullgraph=True)(x), narrow(x))


@pytest.mark.slow
def test_optimize_for_inference_uses_narrow_convs_in_float32_only():
    net = build_evss(19).eval()
    heads = [name for name, m in net.named_modules() if is_narrow_eligible(m)]
    assert sum(name.startswith("flownet.predict_flow") for name in heads) == 5
    exact, fast = optimize_for_inference(net), optimize_for_inference(net, fast=True)
    assert sum(isinstance(m, NarrowConv2d) for m in exact.modules()) == len(heads)
    assert not any(isinstance(m, NarrowConv2d) for m in fast.modules())
