"""The inference-optimised path: BN folding, the fused merge-argmax operator and its fallback,
the prediction-only stream."""
from __future__ import annotations

import copy

import pytest
import torch

from model import build_evss, load_checkpoint
from model.blocks import (IMAGENET_MEAN, IMAGENET_STD, ImageNormalize, UpsampleSK, global_avg_pool, relu, resize,
                          upsample4)
from model.fusion import (class_index, coarse_distortion, crop, fuse, fused_op_available, merge_argmax,
                          merge_argmax_pytorch, upsample_argmax, upsample_argmax_pytorch)
from model.flownet import compute_cropped_deconvolutions, resize_flow
from model.inference import fold_batchnorm, optimize_for_inference

needs_op = pytest.mark.skipif(not fused_op_available(), reason="compiled extension (model._C) not built")


@pytest.fixture(scope="module")
def net(make_weights):
    net = build_evss(19).eval()
    load_checkpoint(net, make_weights.make_state_dict("citys", 0))
    return net


def _inputs(b, c, h, w, seed, dtype=torch.float32, scale=3.0):
    g = torch.Generator().manual_seed(seed)
    warped = scale * torch.randn(b, c, h, w, generator=g, dtype=dtype)
    update = scale * torch.randn(b, c, h, w, generator=g, dtype=dtype)
    edge = 2 * torch.randn(b, 2, h, w, generator=g, dtype=dtype)
    key_pred = torch.randint(0, c, (b, 1, h, w), generator=g)
    return warped, update, edge, coarse_distortion(key_pred, warped)


def _reference(warped, update, edge, dm, wf, size):
    logits = crop(fuse(warped, update, edge, dm, wf).logits, size)
    top2 = logits.topk(min(2, logits.shape[1]), dim=1).values
    margin = top2[:, 0] - top2[:, -1] if logits.shape[1] > 1 else torch.full_like(top2[:, 0], float("inf"))
    return logits.argmax(1), margin


CASES = [  # (b, c, h, w, wf, size or None)
    (1, 19, 7, 9, 0.2, None),
    (2, 11, 5, 13, 0.0, (17, 50)),
    (1, 19, 1, 1, 1.0, None),
    (1, 3, 6, 3, 0.7, (21, 9)),
    (1, 1, 4, 4, 0.2, (13, 15)),
]


@pytest.mark.parametrize("backend", ["pytorch", pytest.param("compiled", marks=needs_op)])
@pytest.mark.parametrize("case", CASES)
def test_merge_argmax_equals_unfused(case, backend):
    b, c, h, w, wf, size = case
    warped, update, edge, dm = _inputs(b, c, h, w, seed=h * 31 + w)
    ref, margin = _reference(warped, update, edge, dm, wf, size or (4 * h, 4 * w))
    out = merge_argmax(warped, update, edge, dm, wf, size, backend=backend)
    assert out.dtype == torch.int64 and out.shape == ref.shape
    assert ((out != ref) & (margin >= 1e-4)).sum() == 0
    if backend == "pytorch":
        assert torch.equal(out, ref)  # the banded fallback is fuse() itself


@needs_op
def test_fused_op_matches_fallback_and_float64():
    warped, update, edge, dm = _inputs(1, 19, 33, 47, seed=3)
    size = (130, 187)
    op = merge_argmax(warped, update, edge, dm, 0.2, size, backend="compiled")
    fb = merge_argmax_pytorch(warped, update, edge, dm, 0.2, size, tile_rows=8)
    _, margin = _reference(warped, update, edge, dm, 0.2, size)
    assert ((op != fb) & (margin >= 1e-4)).sum() == 0
    args64 = [t.double() for t in (warped, update, edge, dm)]
    ref64, margin64 = _reference(*args64, 0.2, size)
    op64 = merge_argmax(*args64, 0.2, size, backend="compiled")
    assert ((op64 != ref64) & (margin64 >= 1e-10)).sum() == 0
    # channels_last and bf16 inputs are accepted (bf16 is computed in float32)
    cl = [t.contiguous(memory_format=torch.channels_last) for t in (warped, update, edge, dm)]
    assert torch.equal(merge_argmax(*cl, 0.2, size, backend="compiled"), op)
    bf = [t.bfloat16() for t in (warped, update, edge, dm)]
    assert torch.equal(merge_argmax(*bf, 0.2, size, backend="compiled"),
                       merge_argmax(*[t.float() for t in bf], 0.2, size, backend="compiled"))


@pytest.mark.parametrize("backend", ["pytorch", pytest.param("compiled", marks=needs_op)])
def test_upsample_argmax(backend):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 19, 9, 14, generator=g)
    for size in (None, (33, 50)):
        full = upsample4(x) if size is None else crop(upsample4(x), size)
        ref = full.argmax(1)
        top2 = full.topk(2, dim=1).values
        out = upsample_argmax(x, size, backend=backend)
        assert ((out != ref) & ((top2[:, 0] - top2[:, 1]) >= 1e-4)).sum() == 0
    assert torch.equal(upsample_argmax_pytorch(x, (33, 50), tile_rows=4), crop(upsample4(x), (33, 50)).argmax(1))


def test_nan_counts_as_largest_like_argmax():
    warped, update, edge, dm = _inputs(1, 5, 3, 3, seed=1)
    warped[0, 3, 1, 1] = float("nan")
    backends = ["pytorch"] + (["compiled"] if fused_op_available() else [])
    ref = fuse(warped, update, edge, dm, 0.2).logits.argmax(1)
    for backend in backends:
        out = merge_argmax(warped, update, edge, dm, 0.2, backend=backend)
        assert torch.equal(out[ref == 3], ref[ref == 3])


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_class_index_is_argmax_with_ties_and_nan(layout):
    g = torch.Generator().manual_seed(3)
    x = torch.randint(-2, 3, (2, 19, 64, 96), generator=g).float()  # integer logits: many ties
    x[0, 4, 2, 3] = float("nan")
    x[1, :, 5, 6] = float("nan")
    x = x.contiguous(memory_format=layout)
    assert torch.equal(class_index(x), x.argmax(1, keepdim=True))


@needs_op
def test_opcheck():
    warped, update, edge, dm = _inputs(1, 4, 5, 6, seed=2)
    torch.library.opcheck(torch.ops.evss.fused_merge_argmax.default, (warped, update, edge, dm, 0.2, 19, 22))
    torch.library.opcheck(torch.ops.evss.upsample_argmax.default, (warped, 17, 24))


@needs_op
def test_op_errors():
    warped, update, edge, dm = _inputs(1, 4, 5, 6, seed=2)
    with pytest.raises(RuntimeError, match="out_h"):
        torch.ops.evss.fused_merge_argmax(warped, update, edge, dm, 0.2, 21, 24)
    with pytest.raises(RuntimeError, match="edge_q"):
        torch.ops.evss.fused_merge_argmax(warped, update, edge[:, :1], dm, 0.2, 20, 24)
    with pytest.raises(RuntimeError, match="dtype"):
        torch.ops.evss.fused_merge_argmax(warped, update.double(), edge, dm, 0.2, 20, 24)


@pytest.mark.slow
def test_fold_batchnorm_equals_unfolded(net):
    import copy

    folded = copy.deepcopy(net)
    n = fold_batchnorm(folded)
    assert n > 50
    # only the CSRNet logits head (BN -> ReLU -> conv) keeps a BatchNorm
    remaining = [name for name, m in folded.named_modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert remaining == ["csrnet.logits.norm"]
    g = torch.Generator().manual_seed(0)
    frames = [torch.rand(1, 3, 64, 96, generator=g) for _ in range(2)]
    with torch.no_grad():
        for part in ("keyframe",):
            a, b = getattr(net, part)(frames[0]), getattr(folded, part)(frames[0])
            assert (a - b).abs().max() <= 1e-4 * max(1.0, a.abs().max().item())
        fa, fb = net.flow(frames[1], frames[0]), folded.flow(frames[1], frames[0])
        assert torch.equal(fa, fb)  # FlowNet has no BatchNorm
        warped = net.keyframe(frames[0])
        (ea, ua), (eb, ub) = net.conet(frames[1], warped), folded.conet(frames[1], warped)
        assert (ea - eb).abs().max() <= 1e-4 * max(1.0, ea.abs().max().item())
        assert (ua - ub).abs().max() <= 1e-4 * max(1.0, ua.abs().max().item())


# odd maps inside FlowNet (its 5×5/2 Winograd layers), and a batch of two
@pytest.mark.slow
@pytest.mark.parametrize("batch, size", [(1, (64, 96)), (1, (50, 70)), (2, (50, 70))])
def test_optimized_stream_matches_reference(net, batch, size):
    g = torch.Generator().manual_seed(1)
    frames = [torch.rand(batch, 3, *size, generator=g) for _ in range(3)]
    ref_stream = net.stream()
    ref = [ref_stream.step(f, keyframe=(i == 0)) for i, f in enumerate(frames)]
    for stream in (net.stream(pred_only=True), optimize_for_inference(net).stream()):
        outs = [stream.step(f, keyframe=(i == 0)) for i, f in enumerate(frames)]
        for r, o in zip(ref, outs):
            top2 = r["logits"].topk(2, dim=1).values[..., :size[0], :size[1]]  # logits: the 4h×4w grid
            decided = (top2[:, 0] - top2[:, 1]) > 1e-3
            assert ((r["pred"] != o["pred"]) & decided).sum() == 0
            key = "key_logits" if r["keyframe"] else "update"
            assert (r[key] - o[key]).abs().max() <= 1e-4 * max(1.0, r[key].abs().max().item())
    # the default path is untouched: full-resolution logits are still there
    assert "logits" in ref[1] and "dm_fine" in ref[1]


def _non_keyframe_steps(models, seed: int) -> tuple[list[torch.Tensor], list[dict]]:
    """Each model's stream output for frame 1 after keyframe 0 (two random 64×96 frames)."""
    g = torch.Generator().manual_seed(seed)
    frames = [torch.rand(1, 3, 64, 96, generator=g) for _ in range(2)]
    outs = []
    for m in models:
        stream = m.stream()
        stream.step(frames[0], keyframe=True)
        outs.append(stream.step(frames[1]))
    return frames, outs


@pytest.mark.slow
def test_fast_mode_is_bf16_and_close_to_exact(net):
    exact, fast = optimize_for_inference(net), optimize_for_inference(net, fast=True)
    assert all(p.dtype == torch.bfloat16 for p in fast.parameters())
    assert all(p.dtype == torch.float32 for p in net.parameters())  # the source network is untouched
    _, (ref, out) = _non_keyframe_steps((exact, fast), seed=2)
    assert out["pred"].shape == (1, 64, 96) and out["update"].dtype == torch.float32
    for key in ("warped", "update", "flow"):  # bf16 keeps ~3 significant digits; errors compound over layers
        scale = ref[key].abs().max().item()
        assert (out[key] - ref[key]).abs().max() <= 0.1 * scale, key
        assert (out[key] - ref[key]).abs().mean() <= 0.02 * scale, key


@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-6), (torch.bfloat16, 2 ** -7)])
def test_global_avg_pool_in_both_layouts(dtype, tol):
    x = (torch.randn(2, 5, 7, 9, generator=torch.Generator().manual_seed(8), dtype=torch.float64) + 2)
    expected = x.mean((2, 3), keepdim=True)
    for layout in (torch.contiguous_format, torch.channels_last):
        out = global_avg_pool(x.to(dtype).contiguous(memory_format=layout))
        assert out.shape == (2, 5, 1, 1) and out.dtype == dtype
        # the mean of the rounded inputs, then one or two roundings of the result
        rounded = x.to(dtype).double().mean((2, 3), keepdim=True)
        assert (out.double() - rounded).abs().max() <= 2 * tol * rounded.abs().max(), layout
        assert (out.double() - expected).abs().max() <= 3 * tol * expected.abs().max(), layout


def test_doubling_resize_keeps_the_mean():
    # what the lean SK fusion relies on: a ×2 bilinear resize (align_corners=False) weighs each input pixel equally
    x = torch.randn(2, 3, 5, 7, generator=torch.Generator().manual_seed(10), dtype=torch.float64)
    for size in ((10, 14), (5, 14), (10, 7)):
        assert torch.allclose(resize(x, size).mean((2, 3)), x.mean((2, 3)), rtol=0, atol=1e-14), size
    assert not torch.allclose(resize(x, (9, 13)).mean((2, 3)), x.mean((2, 3)), rtol=0, atol=1e-6)


@pytest.mark.parametrize("small, size", [((6, 8), (12, 16)), ((5, 7), (9, 13))])  # ×2, and a resize that is not
def test_lean_upsample_sk_equals_the_original_order(small, size):
    torch.manual_seed(11)
    block = UpsampleSK(16, 24, 8, relu).eval()
    for m in block.modules():  # non-trivial folded-BN statistics
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2)
    lean = copy.deepcopy(block)
    lean.sk.lean = True
    x, skip = torch.randn(2, 16, *small), torch.randn(2, 24, *size)
    with torch.no_grad():
        ref = block(x, skip)
        for layout in (torch.contiguous_format, torch.channels_last):
            out = lean(x.contiguous(memory_format=layout), skip.contiguous(memory_format=layout))
            assert (out - ref).abs().max() <= 1e-5 * ref.abs().max(), layout


def test_image_normalize_in_bf16_rounds_once():
    image = torch.rand(1, 3, 4, 6, generator=torch.Generator().manual_seed(9)).bfloat16()
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float64).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=torch.float64).view(1, 3, 1, 1)
    out = ImageNormalize()(image)
    assert out.dtype == torch.bfloat16
    assert torch.equal(out, ((image.double() - mean) / std).bfloat16())


@pytest.mark.parametrize("size", [(64, 96), (50, 71)])
def test_cropped_deconvolutions_equal_the_original_crop(net, size):
    pair = torch.rand(1, 6, *size, generator=torch.Generator().manual_seed(5))
    cropped = copy.deepcopy(net.flownet)
    compute_cropped_deconvolutions(cropped)
    with torch.no_grad():
        ref, out = net.flownet(pair), cropped(pair)
    assert out.shape == ref.shape
    assert (out - ref).abs().max() <= 1e-5 * max(1.0, ref.abs().max().item())


def test_resize_flow_scales_values_to_the_new_grid():
    flow = torch.stack([torch.full((3, 5), 1.5), torch.full((3, 5), -2.0)])[None]
    out = resize_flow(flow, (6, 20))
    assert out.shape == (1, 2, 6, 20)
    assert torch.allclose(out[0, 0], torch.full((6, 20), 6.0)) and torch.allclose(out[0, 1], torch.full((6, 20), -4.0))
    # a flow linear in x, u(x) = x on a 1×8 grid, halved: samples at the 2×2 box centres x = 2j + 0.5, halved values
    ramp = torch.arange(8.0).view(1, 1, 1, 8).expand(1, 2, 2, 8)
    assert torch.allclose(resize_flow(ramp, (1, 4))[0, 0, 0], (2 * torch.arange(4.0) + 0.5) / 2)


@pytest.mark.slow
def test_nonkey_scale(net):
    with pytest.raises(ValueError, match="nonkey_scale"):
        optimize_for_inference(net, nonkey_scale=0)
    models = optimize_for_inference(net), optimize_for_inference(net, nonkey_scale=0.5)
    frames, (ref, out) = _non_keyframe_steps(models, seed=4)
    for key in ("flow", "update", "edge"):
        assert out[key].shape == ref[key].shape == (1, ref[key].shape[1], 16, 24), key
    assert out["pred"].shape == (1, 64, 96)
    # the reduced-size decoder enters the last 1×1 conv next to the full-detail warped logits
    small = torch.nn.functional.interpolate(frames[1], size=(32, 48), mode="bilinear", align_corners=False)
    _, d2_s = net.conet.features(small)
    d2 = torch.nn.functional.interpolate(d2_s, size=(16, 24), mode="bilinear", align_corners=False)
    expected = net.conet.predict_cc(torch.cat([d2, out["warped"]], 1))
    assert (out["update"] - expected).abs().max() <= 1e-4 * max(1.0, expected.abs().max().item())
