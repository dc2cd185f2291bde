"""Winograd F(4×4, 3×3) and F(6×6, 3×3) convolutions: the operator and its PyTorch twin against a float64
direct convolution, hand-computed cases, registration (opcheck), and the optimised network against the
original's golden outputs."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from model import build_evss, load_checkpoint
from model.inference import optimize_for_inference, use_winograd
from model.winograd import (F6_MAX_CHANNEL_PAIRS, WinogradConv2d, default_tile, is_winograd_eligible,
                            space_to_depth_filter, winograd_conv3x3, winograd_conv3x3_pytorch, winograd_op_available,
                            winograd_tile, winograd_weight)

needs_op = pytest.mark.skipif(not winograd_op_available(), reason="compiled extension (model._C) not built")
BACKENDS = ["pytorch", pytest.param("compiled", marks=needs_op)]
TILES = [4, 6]


def _conv(backend, x, u, bias, space_to_depth=1):
    if backend == "compiled":
        return torch.ops.evss.winograd_conv3x3(x, u, bias, space_to_depth)
    return winograd_conv3x3_pytorch(x, u, bias, space_to_depth)


def _case(b, c, k, h, w, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, c, h, w, generator=g, dtype=torch.float64).relu()
    weight = torch.randn(k, c, 3, 3, generator=g, dtype=torch.float64) * (2 / (9 * c)) ** 0.5
    return x, weight, torch.randn(k, generator=g, dtype=torch.float64)


# (b, c, k, h, w): tile borders (H, W not multiples of 4 or 6), a single pixel, thin and wide layers,
# channel counts that are not multiples of the kernel's channel block, batches.
SHAPES = [(1, 16, 16, 8, 8), (2, 19, 33, 13, 7), (1, 3, 5, 1, 1), (1, 70, 64, 5, 22), (3, 128, 96, 9, 10)]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("tile", TILES)
@pytest.mark.parametrize("shape", SHAPES)
def test_matches_float64_direct_convolution(backend, tile, shape):
    x, weight, bias = _case(*shape, seed=sum(shape))
    ref = F.conv2d(x, weight, bias, padding=1)
    direct = F.conv2d(x.float(), weight.float(), bias.float(), padding=1)
    u = winograd_weight(weight, tile=tile)
    assert u.shape == ((tile + 2) ** 2, shape[1], shape[2]) and winograd_tile(u) == tile
    out = _conv(backend, x.float().contiguous(memory_format=torch.channels_last), u, bias.float())
    assert out.shape == ref.shape and out.dtype == torch.float32
    scale = ref.abs().max().item()
    # F(4×4, 3×3) rounding: ~10–40× the direct convolution's, ~1e-6 of the output's magnitude; F(6×6) ~2× that
    assert (out.double() - ref).abs().max() <= (2e-5 if tile == 4 else 4e-5) * scale
    assert (direct.double() - ref).abs().max() <= 2e-6 * scale  # the yardstick itself


def _case5(b, c, k, h, w, seed):
    x, _, bias = _case(b, c, k, h, w, seed)
    g = torch.Generator().manual_seed(seed + 1)
    return x, torch.randn(k, c, 5, 5, generator=g, dtype=torch.float64) * (2 / (25 * c)) ** 0.5, bias


# odd sizes (a zero row and column past the edge of the rearrangement), a single pixel, batches,
# phase-channel counts that are not multiples of the kernel's channel block
SHAPES_5X5 = [(1, 24, 48, 16, 32), (2, 19, 21, 13, 7), (1, 3, 4, 1, 1), (1, 70, 40, 9, 22), (3, 48, 96, 11, 10)]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("tile", TILES)
@pytest.mark.parametrize("shape", SHAPES_5X5)
def test_5x5_stride2_matches_float64_direct_convolution(backend, tile, shape):
    x, weight, bias = _case5(*shape, seed=sum(shape))
    ref = F.conv2d(x, weight, bias, stride=2, padding=2)
    u = winograd_weight(space_to_depth_filter(weight), tile=tile)
    assert u.shape == ((tile + 2) ** 2, 4 * shape[1], shape[2])
    out = _conv(backend, x.float().contiguous(memory_format=torch.channels_last), u, bias.float(), 2)
    assert out.shape == ref.shape and out.dtype == torch.float32
    assert (out.double() - ref).abs().max() <= (2e-5 if tile == 4 else 4e-5) * ref.abs().max().item()


def test_space_to_depth_filter_hand_computed():
    # a filter with a single 1 at (a, b) reads input (2y + a - 2, 2x + b - 2): phase (a % 2, b % 2), tap (a // 2, b // 2)
    for a in range(5):
        for b in range(5):
            w = torch.zeros(1, 1, 5, 5)
            w[0, 0, a, b] = 1
            f = space_to_depth_filter(w)
            assert f.shape == (1, 4, 3, 3) and f.sum() == 1
            assert f[0, (a % 2) * 2 + b % 2, a // 2, b // 2] == 1
    with pytest.raises(ValueError, match="5, 5"):
        space_to_depth_filter(torch.zeros(1, 1, 3, 3))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("tile", TILES)
def test_hand_computed_neighbour_counts(backend, tile):
    # all-ones image and filter: each output counts its in-image 3×3 neighbours (4 at corners, 6 on
    # edges, 9 inside), plus the bias; a 7×5 map has partial tiles in both directions for either tile
    x = torch.ones(1, 2, 7, 5)
    u = winograd_weight(torch.ones(1, 2, 3, 3), tile=tile)
    rows = torch.tensor([2.0, 3, 3, 3, 3, 3, 2])
    cols = torch.tensor([2.0, 3, 3, 3, 2])
    expected = (2 * rows[:, None] * cols[None, :] + 0.5).view(1, 1, 7, 5)
    out = _conv(backend, x, u, torch.tensor([0.5]))
    assert torch.allclose(out, expected, rtol=0, atol=1e-5)


@needs_op
def test_layouts_bias_and_bfloat16():
    x, weight, bias = _case(2, 24, 20, 11, 14, seed=3)
    u, x32 = winograd_weight(weight), x.float()
    op = torch.ops.evss.winograd_conv3x3
    cl = op(x32.contiguous(memory_format=torch.channels_last), u, bias.float())
    assert cl.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(op(x32.contiguous(), u, bias.float()), cl)  # NCHW input: same numbers
    assert torch.equal(winograd_conv3x3(x32, u, bias.float()), cl)  # the functional face
    no_bias = op(x32, u, None) + bias.float().view(1, -1, 1, 1)
    assert (no_bias - cl).abs().max() <= 1e-6 * cl.abs().max()
    xb = x32.bfloat16()  # bf16 maps: computed in float32 from the rounded input, rounded once on store
    out = op(xb, u, bias.float())
    assert out.dtype == torch.bfloat16
    assert torch.equal(out, op(xb.float(), u, bias.float()).bfloat16())


@pytest.mark.parametrize("backend", BACKENDS)
def test_bfloat16_products_against_float64(backend):
    # bf16 V, U and M: the transforms amplify bf16 rounding (~2 % relative RMS here, against 0.25 % for
    # a bf16 direct convolution); the operator and its twin round the same values
    x, weight, bias = _case(2, 64, 48, 17, 23, seed=11)
    ref = F.conv2d(x, weight, bias, padding=1)
    u = winograd_weight(weight, torch.bfloat16)
    assert u.dtype == torch.bfloat16
    out = _conv(backend, x.float(), u, bias.float())
    assert out.dtype == torch.float32
    rms = lambda y: ((y.double() - ref).pow(2).mean().sqrt() / ref.std()).item()  # noqa: E731
    assert 2e-3 < rms(out) < 5e-2
    assert rms(_conv(backend, x.float(), winograd_weight(weight), bias.float())) < 1e-5  # float32 products
    if backend == "compiled":
        twin = winograd_conv3x3_pytorch(x.float(), u, bias.float())
        assert (out - twin).abs().max() <= 1e-2 * ref.abs().max()  # an ulp of bf16 M at most


@needs_op
def test_opcheck_and_errors():
    x, weight, bias = _case(1, 8, 4, 6, 9, seed=5)
    x, u, bias = x.float(), winograd_weight(weight), bias.float()
    torch.library.opcheck(torch.ops.evss.winograd_conv3x3.default, (x, u, bias))
    torch.library.opcheck(torch.ops.evss.winograd_conv3x3.default, (x, u, None))
    torch.library.opcheck(torch.ops.evss.winograd_conv3x3.default, (x.bfloat16(), u.bfloat16(), bias))
    u5 = winograd_weight(space_to_depth_filter(torch.randn(4, 8, 5, 5)))
    torch.library.opcheck(torch.ops.evss.winograd_conv3x3.default, (x, u5, bias, 2))
    u6 = winograd_weight(weight, tile=6)
    torch.library.opcheck(torch.ops.evss.winograd_conv3x3.default, (x, u6, bias))
    with pytest.raises(RuntimeError, match=r"\(36 or 64, C, K\) with C = 32"):
        torch.ops.evss.winograd_conv3x3(x, u, bias, 2)
    with pytest.raises(RuntimeError, match=r"\(36 or 64, C, K\)"):
        torch.ops.evss.winograd_conv3x3(x, u[:, :4], bias)
    with pytest.raises(RuntimeError, match=r"\(36 or 64, C, K\)"):
        torch.ops.evss.winograd_conv3x3(x, u[:25], bias)
    with pytest.raises(RuntimeError, match="space_to_depth"):
        torch.ops.evss.winograd_conv3x3(x, u, bias, 0)
    with pytest.raises(RuntimeError, match="bias"):
        torch.ops.evss.winograd_conv3x3(x, u, bias[:3])
    with pytest.raises(RuntimeError, match="float32 or bfloat16"):
        torch.ops.evss.winograd_conv3x3(x.double(), u, bias)
    with pytest.raises(RuntimeError, match="weight must be float32 or bfloat16"):
        torch.ops.evss.winograd_conv3x3(x, u.double(), bias)
    with pytest.raises(ValueError, match="dtype"):
        winograd_weight(weight, torch.float16)
    with pytest.raises(ValueError, match="tile"):
        winograd_weight(weight, tile=5)
    with pytest.raises(ValueError, match="25 points"):
        winograd_tile(u[:25])


@needs_op
def test_flops_are_the_direct_convolutions():
    from torch.utils.flop_counter import FlopCounterMode

    conv = WinogradConv2d(nn.Conv2d(16, 24, 3, padding=1).requires_grad_(False))
    x = torch.rand(2, 16, 10, 13)
    with FlopCounterMode(display=False) as counter:
        conv(x)
    assert counter.get_total_flops() == 2 * 2 * 10 * 13 * 24 * 16 * 9
    conv = WinogradConv2d(nn.Conv2d(16, 24, 5, stride=2, padding=2).requires_grad_(False))
    with FlopCounterMode(display=False) as counter:  # the direct 5×5 convolution's, on the 5×7 output grid
        conv(x)
    assert counter.get_total_flops() == 2 * 2 * 5 * 7 * 24 * 16 * 25


@needs_op
def test_compiles_and_is_inference_only():
    conv = WinogradConv2d(nn.Conv2d(8, 8, 3, padding=1).requires_grad_(False))
    x = torch.randn(1, 8, 9, 12)
    assert torch.equal(torch.compile(conv, backend="aot_eager", fullgraph=True)(x), conv(x))
    conv5 = WinogradConv2d(nn.Conv2d(8, 8, 5, stride=2, padding=2).requires_grad_(False))
    assert torch.equal(torch.compile(conv5, backend="aot_eager", fullgraph=True)(x), conv5(x))
    x.requires_grad_(True)
    with pytest.raises(NotImplementedError, match="inference-only"):
        conv(x).sum().backward()


def test_module_eligibility_and_fallbacks():
    assert is_winograd_eligible(nn.Conv2d(16, 16, 3, padding=1))
    assert is_winograd_eligible(nn.Conv2d(24, 48, 5, stride=2, padding=2))
    for conv in (nn.Conv2d(16, 16, 3, stride=2, padding=1), nn.Conv2d(16, 16, 3, padding=2, dilation=2),
                 nn.Conv2d(16, 16, 5, padding=2), nn.Conv2d(16, 16, 3, padding=1, groups=2),
                 nn.Conv2d(16, 16, 7, stride=2, padding=3), nn.Conv2d(16, 16, 5, stride=2, padding=1),
                 nn.Conv2d(16, 16, 3, padding="same"),
                 nn.Conv2d(16, 2, 3, padding=1), nn.Conv2d(16, 16, 3, padding=1, padding_mode="reflect")):
        assert not is_winograd_eligible(conv), conv
    assert is_winograd_eligible(nn.Conv2d(512, 512, 3, padding=1))
    assert not is_winograd_eligible(nn.Conv2d(512, 512, 3, padding=1), max_channel_pairs=256 * 256)
    with pytest.raises(ValueError, match="3×3"):
        WinogradConv2d(nn.Conv2d(4, 4, 3, stride=2, padding=1))
    conv = nn.Conv2d(16, 16, 3, padding=1).double()
    x = torch.randn(1, 16, 7, 5, dtype=torch.float64)
    # float64 maps (and GPUs) take F.conv2d with the original filter
    assert torch.equal(WinogradConv2d(conv)(x), conv(x))
    conv5 = nn.Conv2d(16, 16, 5, stride=2, padding=2).double()
    assert torch.equal(WinogradConv2d(conv5)(x), conv5(x))


def test_default_tile():
    # F(6×6, 3×3) for float32 products on layers with at most 128² channel pairs (4C for a 5×5/2 layer)
    assert F6_MAX_CHANNEL_PAIRS == 128 * 128
    assert default_tile(nn.Conv2d(128, 128, 3, padding=1)) == 6
    assert default_tile(nn.Conv2d(128, 129, 3, padding=1)) == 4
    assert default_tile(nn.Conv2d(128, 128, 3, padding=1), torch.bfloat16) == 4  # twice the bf16 rounding
    assert default_tile(nn.Conv2d(24, 48, 5, stride=2, padding=2)) == 6  # 96·48 pairs
    assert default_tile(nn.Conv2d(48, 96, 5, stride=2, padding=2)) == 4  # 192·96 pairs
    conv = nn.Conv2d(16, 16, 3, padding=1).requires_grad_(False)
    assert winograd_tile(WinogradConv2d(conv).weight_winograd) == 6
    assert winograd_tile(WinogradConv2d(conv, tile=4).weight_winograd) == 4
    assert "F(6x6, 3x3)" in repr(WinogradConv2d(conv))


@pytest.mark.slow
@needs_op
def test_optimize_for_inference_uses_winograd_on_cpu(make_weights):
    net = build_evss(19).eval()
    load_checkpoint(net, make_weights.make_state_dict("citys", 0))
    exact, direct, fast = (optimize_for_inference(net), optimize_for_inference(net, winograd=False),
                           optimize_for_inference(net, fast=True))
    layers = [m for m in exact.modules() if isinstance(m, WinogradConv2d)]
    assert exact.winograd == len(layers) == fast.winograd > 20 and direct.winograd == 0
    # the widest six stay direct: four 512², one 384², one 896·128
    assert use_winograd(direct.net, max_channel_pairs=256 * 256) == len(layers) - 6
    assert all(m.weight_winograd.dtype == torch.float32 for m in layers)
    tiles = [winograd_tile(m.weight_winograd) for m in layers]
    assert tiles.count(6) == sum(default_tile(m) == 6 for m in layers) > 10 and 4 in tiles
    assert all(winograd_tile(m.weight_winograd) == 4 for m in fast.modules() if isinstance(m, WinogradConv2d))
    # the fast mode: bf16 weights, bf16 transformed filters of those bf16 weights, bf16 maps out
    conv = next(m for m in fast.modules() if isinstance(m, WinogradConv2d))
    assert conv.weight.dtype == torch.bfloat16 and conv.weight_winograd.dtype == torch.bfloat16
    assert torch.equal(conv.weight_winograd, winograd_weight(conv.weight, torch.bfloat16))
    x = torch.rand(1, conv.in_channels, 9, 11).bfloat16()
    out = conv(x)
    ref = F.conv2d(x.double(), conv.weight.double(), conv.bias.double(), padding=1)
    assert out.dtype == torch.bfloat16 and (out.double() - ref).abs().max() <= 2 ** -4 * ref.abs().max()
    fp32_products = optimize_for_inference(net, fast=True, winograd_products=torch.float32)
    conv = next(m for m in fp32_products.modules() if isinstance(m, WinogradConv2d))
    assert conv.weight_winograd.dtype == torch.float32
    out = conv(x)
    assert (out.double() - ref).abs().max() <= 2 ** -7 * ref.abs().max()


@pytest.mark.slow
def test_optimized_keyframe_matches_golden(make_weights, reference_dir):
    net = build_evss(19).eval()
    load_checkpoint(net, make_weights.make_state_dict("citys", 0))
    exact = optimize_for_inference(net)
    g = torch.load(reference_dir / "golden_citys_256x512.pt", weights_only=True)
    frames = g["frames_u8"].float() / 255
    key = exact.keyframe(exact.prepare(frames[:1]))
    ref = g["d3.key_logits"]
    assert key.shape == ref.shape
    assert (key - ref).abs().max() <= 1e-4 * max(1.0, ref.abs().max().item())  # test_golden's tolerance
