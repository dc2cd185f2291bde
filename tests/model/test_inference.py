"""The inference-optimised path: BN folding, the fused merge-argmax operator and its fallback,
the prediction-only stream, and a smoke run of the benchmark CLI."""
from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from model import build_evss, load_checkpoint
from model.blocks import (IMAGENET_MEAN, IMAGENET_STD, ImageNormalize, UpsampleSK, global_avg_pool, relu, resize,
                          upsample4)
from model.fusion import (class_index, coarse_distortion, crop, fuse, fused_op_available, merge_argmax,
                          merge_argmax_pytorch, upsample_argmax, upsample_argmax_pytorch)
from model.flownet import compute_cropped_deconvolutions, resize_flow
from model.inference import fold_batchnorm, optimize_for_inference

ROOT = Path(__file__).resolve().parents[1]
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


def test_benchmark_cli_smoke(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, "-m", "tools.benchmark", "--resolutions", "64x128", "--repeats", "1",
                           "--compare", "original", "exact", "--baseline", "lraspp", "--weights", "random",
                           "--no-flops", "--warmup", "0", "--json", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads(out.read_text())
    entry = data["64x128"]
    for key in ("key_ms", "nonkey_ms", "flownet_ms", "conet_ms", "fusion_ms", "warp_ms", "peak_mem_mb",
                "amortised_k10_ms", "lraspp_fp32_ms"):
        assert key in entry, key
    assert "environment" in data and data["threads"] >= 1
    compare = data["resolutions"]["64x128"]["compare"]
    for stage, (lo, hi) in compare["ratio_ranges"].items():  # one repeat: the single pair's ratio
        assert lo == hi == pytest.approx(compare["ratios"][stage]), stage
    assert set(data["resolutions"]["64x128"]["exact"]["faults"]) >= {"key", "nonkey", "fusion"}
    assert "time ratios" in proc.stdout


@pytest.mark.parametrize("variant", ["original", "exact"])
def test_benchmark_nonkey_stage_is_the_streams_step(net, variant):
    # the timed non-keyframe step starts from the state a keyframe leaves and runs the stream's own step
    from tools.benchmark import Runner

    frames = [torch.rand(1, 3, 64, 96, generator=torch.Generator().manual_seed(s)) for s in (11, 12)]
    runner = Runner(variant, net, torch.device("cpu"))
    nonkey = runner.stage_functions(frames)["nonkey"]
    stream = (net if variant == "original" else runner.model).stream()
    with torch.no_grad():
        stream.step(frames[0], keyframe=True)
        expected = stream.step(frames[1])
        out = nonkey()
    assert torch.equal(out["warped"], expected["warped"])
    if variant == "original":
        assert torch.equal(out["logits"], expected["logits"])
    else:
        assert torch.equal(out["pred"], expected["pred"])


def test_benchmark_variant_names():
    from tools.benchmark import VARIANT_OPTIONS, variant_options

    assert variant_options("fast") == {"fast": True} and variant_options("exact") == {}
    assert variant_options("fast@0.75") == {"fast": True, "nonkey_scale": 0.75}
    assert variant_options("exact-direct@0.5") == {"winograd": False, "nonkey_scale": 0.5}
    assert "nonkey_scale" not in VARIANT_OPTIONS["fast"]  # the table is not changed by a lookup
    for bad in ("fastest", "original@0.5", "fast@1", "fast@0", "fast@x", "fast@"):
        with pytest.raises(ValueError, match="variant"):
            variant_options(bad)


def test_benchmark_runner_precision(net):
    # the conv peak a runner's GFLOP/s is compared with: bf16 for the fast variants only
    from tools.benchmark import Runner

    dtypes = {name: Runner(name, net, torch.device("cpu")).dtype for name in ("original", "exact", "fast", "fast@0.75")}
    assert dtypes == {"original": torch.float32, "exact": torch.float32,
                      "fast": torch.bfloat16, "fast@0.75": torch.bfloat16}


def test_paired_ratio_range_by_hand():
    from tools.benchmark import paired_ratio_range

    a, b = [10.0, 30.0, 20.0], [5.0, 10.0, 20.0]  # pairs 2x, 3x, 1x; medians 20 / 10 = 2x
    assert paired_ratio_range(a, b) == [1.0, 3.0]
    with pytest.raises(ValueError):
        paired_ratio_range(a, b[:2])


FAULTS_SCRIPT = """
import json, torch
from tools.benchmark import time_stages
fns = {"v": {"fresh_64mb": lambda: torch.ones(16 << 20), "nothing": lambda: None}}
times, faults = time_stages(fns, repeats=3, warmup=0, device=torch.device("cpu"))
print(json.dumps({"times": times, "faults": faults}))
"""


THP = Path("/sys/kernel/mm/transparent_hugepage/enabled")


@pytest.mark.skipif(not Path("/proc/self").exists(), reason="Linux page-fault counting")
@pytest.mark.skipif(THP.exists() and THP.read_text().startswith("[always]"),
                    reason="transparent huge pages always on: a 64 MB tensor takes ~32 faults, not 16384")
def test_benchmark_counts_page_faults_per_call():
    # glibc's default thresholds: a fresh 64 MB tensor is mmapped and faulted in page by page each call
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "THP_MEM_ALLOC_ENABLE"}
    proc = subprocess.run([sys.executable, "-c", FAULTS_SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert all(n >= 16384 for n in out["faults"]["v"]["fresh_64mb"]), out["faults"]  # 64 MiB of 4 KiB pages
    assert all(n < 100 for n in out["faults"]["v"]["nothing"]), out["faults"]
    assert len(out["times"]["v"]["nothing"]) == 3


def test_benchmark_fast_accuracy_cli(tmp_path, net):
    weights = tmp_path / "evss.pth"
    torch.save(net.state_dict(), weights)
    out = tmp_path / "acc.json"
    kwargs = json.dumps({"num_clips": 1, "clip_len": 4, "height": 32, "width": 64, "window": 4})
    cmd = [sys.executable, "-m", "tools.benchmark", "--fast-accuracy", "--weights", str(weights), "--synthetic-kwargs",
           kwargs, "--accuracy-distance", "2", "--json", str(out)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(out.read_text())["fast_accuracy"]
    assert res["windows"] == 1 and res["distance"] == 2
    assert res["miou_change_points"] == pytest.approx(res["miou_fast"] - res["miou_exact"])
    assert 0 <= res["agreement_miou_fast_vs_exact"] <= 100
    refused = subprocess.run(cmd[:5] + ["no-such.pth"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert refused.returncode != 0 and "needs a trained EVSS checkpoint" in refused.stderr
