"""The resample2d warp: compiled CPU op (csrc/) and the pure-PyTorch fallback (model/warp.py).

Against the reference (shared/reference/resample2d_cases.pt, made with a bit-exact emulation of
the original CUDA kernel):
* forward: required within 1e-6 of each case's largest |output|; the CPU op and the fallback are
  asserted BIT-EXACT on all 32 cases (and on the non-finite case, NaN for NaN).
* grad_input / grad_flow of the CPU op: BIT-EXACT as well (grad_input is accumulated in the
  reference's sequential order b, c, y, x, corners TL, TR, BL, BR; this includes case 30, flagged
  grad_input_order_dependent, whose float32 result depends on that order).  The fallback's
  gradients (float64 accumulation) are checked within 4 float32 ulps of the accumulated magnitude.
"""
from __future__ import annotations

import importlib
import json
import os
import shutil

import pytest
import torch

from model.warp import cuda_kernels_compiled, extension_available, warp, warp_backend, warp_pytorch

# The module itself (the package `model` re-exports the function `warp` under the same name).
mw = importlib.import_module("model.warp")

N_CASES = 32
EPS32 = torch.finfo(torch.float32).eps

needs_op = pytest.mark.skipif(
    not extension_available(),
    reason="model._C is not built (pip install --no-build-isolation -e .); see test_extension_is_built",
)


@pytest.fixture(scope="module")
def cases(reference_dir):
    path = reference_dir / "resample2d_cases.pt"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    return torch.load(path, weights_only=True)


@pytest.fixture(scope="module")
def check_json(reference_dir):
    path = reference_dir / "resample2d_check.json"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    return json.loads(path.read_text())


def op_forward(x, f):
    return torch.ops.evss.resample2d(x, f)


def op_grad_input(g, x, f):
    return torch.ops.evss.resample2d_backward_input(g, x, f)


def op_grad_flow(g, x, f):
    return torch.ops.evss.resample2d_backward_flow(g, x, f)


def assert_bitwise_equal(actual, expected, what=""):
    """Equal bit for bit, except that any NaN matches any NaN."""
    assert actual.shape == expected.shape and actual.dtype == expected.dtype, what
    nan_a, nan_e = torch.isnan(actual), torch.isnan(expected)
    assert torch.equal(nan_a, nan_e), f"{what}: NaN positions differ"
    itype = torch.int64 if actual.dtype == torch.float64 else torch.int32
    a = torch.where(nan_a, torch.zeros_like(actual), actual).contiguous().view(itype)
    e = torch.where(nan_e, torch.zeros_like(expected), expected).contiguous().view(itype)
    bad = (a != e).sum().item()
    assert bad == 0, f"{what}: {bad} elements differ, max |diff| {(actual - expected).abs().nan_to_num().max().item():.3g}"


def grad_magnitudes(grad_output, inp, flow):
    """Per element of grad_input and grad_flow, the sum of |terms| accumulated into it (float64):
    the scale for 'a few float32 ulps of the accumulated magnitude'."""
    g = grad_output.double().abs()
    bsz, ch, h, w = inp.shape
    n = flow.shape[2] * flow.shape[3]
    a, b, idx = mw._geometry(flow, h, w, truncated=True)
    a, b = a.double().abs(), b.double().abs()
    gi = torch.zeros(bsz, ch, h * w, dtype=torch.float64)
    gflat = g.reshape(bsz, ch, n)
    for wt, i in zip(((1 + a) * (1 + b), a * (1 + b), (1 + a) * b, a * b), idx):
        gi.scatter_add_(2, i.expand(bsz, ch, n), wt * gflat)
    a, b, idx = mw._geometry(flow, h, w)
    flat = inp.double().abs().reshape(bsz, ch, h * w)
    corners = sum(torch.gather(flat, 2, i.expand(bsz, ch, n)) for i in idx)
    gf = (gflat * corners).sum(1, keepdim=True).expand(bsz, 2, n)
    return gi.reshape(inp.shape), gf.reshape(flow.shape)


# ------------------------------------------------------------------------------------------------
# Build


def test_extension_is_built():
    assert extension_available(), (
        f"model._C could not be loaded ({mw._EXTENSION_ERROR!r}); build it with "
        "`pip install --no-build-isolation -e .` (run/test.sh does)"
    )
    assert warp_backend() in ("compiled (cpu)", "compiled (cpu+cuda)")
    assert torch._C._dispatch_has_kernel_for_dispatch_key("evss::resample2d", "CPU")


def _nvcc_available() -> bool:
    if os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH"):
        home = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH")
        if os.path.isfile(os.path.join(home, "bin", "nvcc")):
            return True
    return shutil.which("nvcc") is not None


@pytest.mark.skipif(not _nvcc_available(), reason="nvcc not found: the CUDA kernels are not built here")
@pytest.mark.skipif(torch.version.cuda is None, reason="torch is not a CUDA build: the CUDA kernels are not built")
def test_cuda_kernels_compiled():
    """CI compiles the CUDA kernels (it cannot run them): with nvcc and a CUDA torch the built
    extension must contain them (FORCE_CUDA=0 would make this fail on purpose)."""
    assert extension_available(), f"model._C could not be loaded ({mw._EXTENSION_ERROR!r})"
    assert cuda_kernels_compiled(), "model._C was built without CUDA kernels although nvcc and a CUDA torch exist"
    for name in ("resample2d", "resample2d_backward_input", "resample2d_backward_flow"):
        assert torch._C._dispatch_has_kernel_for_dispatch_key(f"evss::{name}", "CUDA"), name
    assert warp_backend() == "compiled (cpu+cuda)"


# ------------------------------------------------------------------------------------------------
# Reference cases


@needs_op
@pytest.mark.parametrize("i", range(N_CASES))
def test_case_forward_bitexact(cases, i):
    key = f"case{i:02d}"
    inp, flow, ref = cases[f"{key}.input"], cases[f"{key}.flow"], cases[f"{key}.output"]
    out = op_forward(inp, flow)
    scale = ref.abs().max().item()
    assert (out - ref).abs().max().item() <= 1e-6 * max(scale, 1e-30), key  # the requirement
    assert_bitwise_equal(out, ref, f"{key} ({cases[f'{key}.desc']}) op forward")
    assert_bitwise_equal(warp(inp, flow), ref, f"{key} warp()")
    assert_bitwise_equal(warp_pytorch(inp, flow), ref, f"{key} fallback forward")


@needs_op
@pytest.mark.parametrize("i", range(N_CASES))
def test_case_backward(cases, i):
    key = f"case{i:02d}"
    inp, flow, go = cases[f"{key}.input"], cases[f"{key}.flow"], cases[f"{key}.grad_output"]
    ref_gi, ref_gf = cases[f"{key}.grad_input"], cases[f"{key}.grad_flow"]
    # CPU op: bit-exact, also for the order-dependent case 30 (same sequential order as the reference).
    assert_bitwise_equal(op_grad_input(go, inp, flow), ref_gi, f"{key} op grad_input")
    assert_bitwise_equal(op_grad_flow(go, inp, flow), ref_gf, f"{key} op grad_flow")
    # Through autograd.
    x, f = inp.clone().requires_grad_(), flow.clone().requires_grad_()
    warp(x, f).backward(go)
    assert_bitwise_equal(x.grad, ref_gi, f"{key} autograd grad_input")
    assert_bitwise_equal(f.grad, ref_gf, f"{key} autograd grad_flow")
    # Fallback: float64 accumulation, within 4 float32 ulps of the accumulated magnitude.
    x, f = inp.clone().requires_grad_(), flow.clone().requires_grad_()
    warp_pytorch(x, f).backward(go)
    mag_gi, mag_gf = grad_magnitudes(go, inp, flow)
    assert ((x.grad.double() - ref_gi.double()).abs() <= 4 * EPS32 * mag_gi).all(), f"{key} fallback grad_input"
    assert ((f.grad.double() - ref_gf.double()).abs() <= 4 * EPS32 * mag_gf).all(), f"{key} fallback grad_flow"


@needs_op
def test_case_nonfinite(cases):
    """NaN / +-inf flows (see model/warp.py's docstring): compared NaN for NaN with the reference."""
    inp, flow, go = cases["nonfinite.input"], cases["nonfinite.flow"], cases["nonfinite.grad_output"]
    assert_bitwise_equal(op_forward(inp, flow), cases["nonfinite.output"], "forward")
    assert_bitwise_equal(warp_pytorch(inp, flow), cases["nonfinite.output"], "fallback forward")
    assert_bitwise_equal(op_grad_input(go, inp, flow), cases["nonfinite.grad_input"], "grad_input")
    assert_bitwise_equal(op_grad_flow(go, inp, flow), cases["nonfinite.grad_flow"], "grad_flow")
    x, f = inp.clone().requires_grad_(), flow.clone().requires_grad_()
    warp_pytorch(x, f).backward(go)
    assert torch.equal(torch.isnan(x.grad), torch.isnan(cases["nonfinite.grad_input"]))
    assert torch.equal(torch.isnan(f.grad), torch.isnan(cases["nonfinite.grad_flow"]))


@needs_op
def test_worked_examples(check_json):
    """The four hand-checkable examples of resample2d_check.json (the fourth shows the FMA)."""
    examples = check_json["worked_examples"]
    assert len(examples) == 4
    for ex in examples:
        inp = torch.tensor(ex["input[0,0]"], dtype=torch.float32)[None, None]
        flow = torch.stack([torch.tensor(ex["flow_u[0]"]), torch.tensor(ex["flow_v[0]"])])[None].float()
        go = torch.tensor(ex["grad_output[0,0]"], dtype=torch.float32)[None, None]
        expect = lambda k: torch.tensor(ex[k], dtype=torch.float32)  # noqa: E731
        for fwd in (op_forward, warp_pytorch):
            assert torch.equal(fwd(inp, flow)[0, 0], expect("expected_output[0,0]")), ex["desc"]
        assert torch.equal(op_grad_input(go, inp, flow)[0, 0], expect("expected_grad_input[0,0]")), ex["desc"]
        gf = op_grad_flow(go, inp, flow)[0]
        assert torch.equal(gf[0], expect("expected_grad_flow_u[0]")), ex["desc"]
        assert torch.equal(gf[1], expect("expected_grad_flow_v[0]")), ex["desc"]


def _bits_to_f32(*bits):
    return torch.tensor(list(bits), dtype=torch.int32).view(torch.float32)


def test_fallback_fma_emulation_is_exact():
    """The fallback's fmaf emulation where computing x*y + z in double and rounding to float32
    (double rounding) would be wrong: the double sum lands exactly halfway between two floats."""
    x = _bits_to_f32(0x3F820C04, 0x3FB702D6, 0x3FB1AC2C)
    y = _bits_to_f32(0x337BF877, 0x33330C9D, 0x33386DDE)
    z = _bits_to_f32(0x3F800000, 0x3F800000, 0x3F800000)
    expected = _bits_to_f32(0x3F800001, 0x3F800001, 0x3F800001)  # fmaf, worked out with exact fractions
    naive = (x.double() * y.double() + z.double()).float()
    assert not torch.equal(naive, expected)  # the double-rounding trap is real for these
    assert torch.equal(mw._fma_f32(x, y, z), expected)
    assert torch.equal(mw._fma_f32(-x, y, -z), -expected)


# ------------------------------------------------------------------------------------------------
# Properties on random data


def _random(bsz=2, ch=5, h=9, w=11, scale=3.0, dtype=torch.float32, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(bsz, ch, h, w, generator=gen, dtype=torch.float64).to(dtype)
    f = (torch.randn(bsz, 2, h, w, generator=gen, dtype=torch.float64) * scale).to(dtype)
    return x, f


@needs_op
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fallback_matches_op(dtype):
    x, f = _random(dtype=dtype, scale=4.0)
    g = torch.randn(x.shape, generator=torch.Generator().manual_seed(1), dtype=dtype)
    out_op, out_py = warp(x, f, backend="compiled"), warp(x, f, backend="pytorch")
    if dtype == torch.float32:
        assert_bitwise_equal(out_py, out_op, "forward")
    else:  # float64: the op fuses the last multiply-add, the fallback rounds twice
        torch.testing.assert_close(out_py, out_op, rtol=0, atol=4 * torch.finfo(dtype).eps * out_op.abs().max().item())
    grads = {}
    for backend in ("compiled", "pytorch"):
        xr, fr = x.clone().requires_grad_(), f.clone().requires_grad_()
        warp(xr, fr, backend=backend).backward(g)
        grads[backend] = (xr.grad, fr.grad)
    mag_gi, mag_gf = grad_magnitudes(g, x, f)
    eps = torch.finfo(dtype).eps
    assert ((grads["pytorch"][0].double() - grads["compiled"][0].double()).abs() <= 4 * eps * mag_gi).all()
    assert ((grads["pytorch"][1].double() - grads["compiled"][1].double()).abs() <= 4 * eps * mag_gf).all()


def _gradcheck_inputs(seed=0):
    """float64 features and a flow whose sampling positions stay >= 0.1 px from integers (finite
    differences must not cross a corner), some of them outside the image."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 3, 4, 5, generator=gen, dtype=torch.float64)
    whole = torch.randint(-3, 4, (2, 2, 4, 5), generator=gen).double()
    frac = 0.1 + 0.8 * torch.rand(2, 2, 4, 5, generator=gen, dtype=torch.float64)
    return x.requires_grad_(), (whole + frac).requires_grad_()


@pytest.mark.parametrize("backend", ["compiled", "pytorch"])
def test_gradcheck_float64(backend):
    if backend == "compiled" and not extension_available():
        pytest.skip("model._C is not built")
    x, f = _gradcheck_inputs()
    assert torch.autograd.gradcheck(lambda a, b: warp(a, b, backend=backend), (x, f), eps=1e-6, atol=1e-7)


@needs_op
def test_strides_and_channels_last_give_identical_results():
    x, f = _random(bsz=2, ch=6, h=7, w=10, scale=2.5)
    g = torch.randn(2, 6, 7, 10, generator=torch.Generator().manual_seed(3))

    def run(xin, fin, gin):
        xin, fin = xin.detach().requires_grad_(), fin.detach().requires_grad_()
        out = warp(xin, fin)
        out.backward(gin)
        return out, xin.grad, fin.grad

    ref = run(x, f, g)
    # transposed storage, a sliced (strided) view, channels_last, non-contiguous grad_output
    x_t = x.transpose(2, 3).contiguous().transpose(2, 3)
    big = torch.zeros(2, 12, 7, 20)
    big[:, ::2, :, ::2] = x
    x_s = big[:, ::2, :, ::2]
    fbig = torch.zeros(2, 4, 14, 10)
    fbig[:, 1:3, ::2] = f
    f_s = fbig[:, 1:3, ::2]
    x_cl = x.contiguous(memory_format=torch.channels_last)
    g_t = g.transpose(2, 3).contiguous().transpose(2, 3)
    assert not x_t.is_contiguous() and not x_s.is_contiguous() and not f_s.is_contiguous()
    for xin, fin, gin in ((x_t, f, g), (x_s, f_s, g), (x_cl, f, g), (x, f.contiguous(memory_format=torch.channels_last), g_t)):
        got = run(xin, fin, gin)
        for a, b in zip(got, ref):
            assert_bitwise_equal(a, b, "strided")
    out_cl = warp(x_cl, f)
    assert out_cl.is_contiguous(memory_format=torch.channels_last)  # layout follows the features


@needs_op
def test_deterministic_across_thread_counts():
    x, f = _random(bsz=1, ch=8, h=16, w=24, scale=2.0)
    g = torch.randn(1, 8, 16, 24, generator=torch.Generator().manual_seed(5))
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = (op_forward(x, f), op_grad_input(g, x, f), op_grad_flow(g, x, f))
    finally:
        torch.set_num_threads(threads)
    many = (op_forward(x, f), op_grad_input(g, x, f), op_grad_flow(g, x, f))
    for a, b in zip(one, many):
        assert_bitwise_equal(a, b, "threads")


@pytest.mark.parametrize("backend", ["compiled", "pytorch"])
@pytest.mark.parametrize("u,v,row,col", [
    (1e3, 0.0, None, -1), (-1e4, 0.0, None, 0), (0.0, 5e2, -1, None), (0.0, -7e5, 0, None),
    (1e6, -1e6, 0, -1), (-3e9, 3e9, -1, 0), (1e30, 1e30, -1, -1), (-1e30, 2.5, None, 0),
])
def test_far_outside_gives_border(backend, u, v, row, col):
    """Flows pointing far outside sample the border pixel (row/col None: that coordinate stays
    inside; then the other axis is clamped and this one is x + 0 / y + 0)."""
    if backend == "compiled" and not extension_available():
        pytest.skip("model._C is not built")
    x, _ = _random(bsz=1, ch=3, h=5, w=6)
    f = torch.empty(1, 2, 5, 6)
    f[:, 0], f[:, 1] = u, (2.5 if v == 2.5 else v)
    out = warp(x, f, backend=backend)
    assert torch.isfinite(out).all()
    for yy in range(5):
        for xx in range(6):
            r = yy if row is None else row
            c = xx if col is None else col
            if v == 2.5:  # fractional in y, clamped in x: a blend of two rows at column c
                continue
            assert torch.equal(out[0, :, yy, xx], x[0, :, r, c]), (yy, xx)


@pytest.mark.parametrize("backend", ["compiled", "pytorch"])
def test_nonfinite_flow_behaviour(backend):
    """As documented in model/warp.py: NaN or +-inf in the flow gives NaN in every channel of that
    output pixel (even where the features are zero) and nowhere else.  Backward: NaN reaches
    grad_features (at the clamped corners) and the OTHER component of that pixel's flow gradient
    (a NaN/inf u makes the fraction a NaN, which weighs the v-gradient terms, while both x corners
    clamp to one column so the u-gradient terms cancel to a finite value)."""
    if backend == "compiled" and not extension_available():
        pytest.skip("model._C is not built")
    x, f = _random(bsz=1, ch=3, h=4, w=5, scale=0.7)
    x[:, :, 0, 0] = 0.0
    bad = {(0, 0): (0, float("nan")), (1, 2): (1, float("inf")), (3, 4): (0, float("-inf")), (2, 1): (1, float("nan"))}
    for (yy, xx), (comp, val) in bad.items():
        f[0, comp, yy, xx] = val
    xr, fr = x.clone().requires_grad_(), f.clone().requires_grad_()
    out = warp(xr, fr, backend=backend)
    mask = torch.zeros(4, 5, dtype=torch.bool)
    for yy, xx in bad:
        mask[yy, xx] = True
    assert torch.isnan(out[0][:, mask]).all()
    assert torch.isfinite(out[0][:, ~mask]).all()
    out.backward(torch.ones_like(out))
    assert torch.isnan(xr.grad).any()
    for (yy, xx), (comp, _) in bad.items():
        assert torch.isnan(fr.grad[0, 1 - comp, yy, xx]), (yy, xx)
        assert torch.isfinite(fr.grad[0, comp, yy, xx]), (yy, xx)
    assert torch.isfinite(fr.grad[0][:, ~mask]).all()


@pytest.mark.parametrize("backend", ["compiled", "pytorch"])
def test_input_and_flow_sizes_may_differ(backend):
    """The output follows the flow's H, W; reads clamp to the features' H, W."""
    if backend == "compiled" and not extension_available():
        pytest.skip("model._C is not built")
    x, _ = _random(bsz=2, ch=3, h=6, w=7)
    zero_small = torch.zeros(2, 2, 4, 5)
    assert torch.equal(warp(x, zero_small, backend=backend), x[:, :, :4, :5])
    zero_big = torch.zeros(2, 2, 8, 9)
    out = warp(x, zero_big, backend=backend)
    assert out.shape == (2, 3, 8, 9)
    rows = torch.arange(8).clamp(max=5)
    cols = torch.arange(9).clamp(max=6)
    assert torch.equal(out, x[:, :, rows][:, :, :, cols])
    if backend == "compiled":
        f = torch.randn(2, 2, 8, 9, generator=torch.Generator().manual_seed(2)) * 3
        assert_bitwise_equal(warp(x, f), warp_pytorch(x, f), "sizes differ")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_reduced_precision_on_cpu_computes_in_float32(dtype):
    x, f = _random(dtype=dtype)
    out = warp(x, f)
    assert out.dtype == dtype
    assert torch.equal(out, warp(x.float(), f.float()).to(dtype))
    xr = x.clone().requires_grad_()
    warp(xr, f).sum().backward()
    assert xr.grad.dtype == dtype
    if extension_available():
        with pytest.raises(RuntimeError, match="CPU kernel supports float32 and float64"):
            op_forward(x, f)


def test_empty_tensors():
    for backend in (["compiled"] if extension_available() else []) + ["pytorch"]:
        assert warp(torch.zeros(2, 0, 3, 4), torch.zeros(2, 2, 3, 4), backend=backend).shape == (2, 0, 3, 4)
        assert warp(torch.zeros(2, 3, 3, 4), torch.zeros(2, 2, 0, 4), backend=backend).shape == (2, 3, 0, 4)
        x = torch.zeros(1, 0, 3, 4, requires_grad=True)
        f = torch.zeros(1, 2, 3, 4, requires_grad=True)
        warp(x, f, backend=backend).sum().backward()
        assert torch.equal(f.grad, torch.zeros_like(f))


def test_argument_errors():
    x, f = _random(bsz=2, ch=3, h=4, w=5)
    with pytest.raises(ValueError, match="batch"):
        warp(x, f[:1])
    with pytest.raises(ValueError, match=r"\(B, 2, H, W\)"):
        warp(x, torch.cat([f, f], 1))
    with pytest.raises(ValueError, match="features must be"):
        warp(x[0], f)
    with pytest.raises(TypeError, match="same dtype"):
        warp(x, f.double())
    with pytest.raises(ValueError, match="unknown backend"):
        warp(x, f, backend="magic")
    if extension_available():
        with pytest.raises(RuntimeError, match="same batch size"):
            op_forward(x, f[:1])
        with pytest.raises(RuntimeError, match="flow must be 4-D"):
            op_forward(x, f[:, :1])
        with pytest.raises(RuntimeError, match="same dtype"):
            op_forward(x, f.double())
        with pytest.raises(RuntimeError, match="grad_output must have the output's shape"):
            op_grad_input(torch.zeros(2, 3, 4, 4), x, f)
        with pytest.raises(RuntimeError, match="non-empty image"):
            op_forward(torch.zeros(2, 3, 0, 5), f)


def test_backend_selection(monkeypatch):
    assert warp_backend("pytorch") == "pytorch fallback"
    monkeypatch.setattr(mw, "_DEFAULT_BACKEND", "pytorch")  # what EVSS_WARP=pytorch sets at import
    assert warp_backend() == "pytorch fallback"
    x, f = _random(bsz=1, ch=2, h=3, w=4)
    assert_bitwise_equal(warp(x, f), warp_pytorch(x, f), "forced fallback")
    monkeypatch.setattr(mw, "_DEFAULT_BACKEND", "auto")
    if extension_available():
        assert warp_backend() in ("compiled (cpu)", "compiled (cpu+cuda)")
    else:
        assert warp_backend() == "pytorch fallback"
        with pytest.raises(RuntimeError, match="not available"):
            warp(x, f, backend="compiled")


# ------------------------------------------------------------------------------------------------
# Operator registration: opcheck and torch.compile


@needs_op
def test_opcheck():
    x, f = _random(bsz=2, ch=4, h=6, w=7)
    samples = [
        (x, f),
        (x.clone().requires_grad_(), f.clone().requires_grad_()),
        (x.contiguous(memory_format=torch.channels_last).requires_grad_(), f.clone().requires_grad_()),
        (x.double().requires_grad_(), f.double()),
    ]
    for args in samples:
        torch.library.opcheck(torch.ops.evss.resample2d.default, args)
    g = torch.randn(2, 4, 6, 7)
    torch.library.opcheck(torch.ops.evss.resample2d_backward_input.default, (g, x, f))
    torch.library.opcheck(torch.ops.evss.resample2d_backward_flow.default, (g, x, f))


@pytest.mark.parametrize("backend", ["compiled", "pytorch"])
def test_torch_compile_fullgraph(backend):
    """warp inside torch.compile(fullgraph=True): same values and gradients as eager.  The
    aot_eager backend traces with the fake kernels and autograd formulas exactly as inductor would
    (inductor itself only adds C++ code generation, which takes ~30 s on CPU)."""
    if backend == "compiled" and not extension_available():
        pytest.skip("model._C is not built")

    def fn(feats, flow):
        return torch.tanh(warp(feats * 2, flow, backend=backend)).sum(1)

    compiled = torch.compile(fn, fullgraph=True, backend="aot_eager", dynamic=False)
    x, f = _random(bsz=1, ch=3, h=8, w=9, scale=2.0)
    results = []
    for run in (fn, compiled):
        xr, fr = x.clone().requires_grad_(), f.clone().requires_grad_()
        out = run(xr, fr)
        out.sum().backward()
        results.append((out, xr.grad, fr.grad))
    for a, b in zip(*results):
        assert_bitwise_equal(a, b, "compiled")
