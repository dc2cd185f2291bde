"""Property tests (hypothesis) of the resample2d warp: the compiled CPU op against the pure-PyTorch
fallback (model/warp.py) on random shapes, memory layouts and flows.

Inputs: B, C, H, W (and the flow's Hf, Wf, equal or not) from 1 to 6; features and flows as
contiguous tensors, transposed storage, strided slices, channels_last or batch-expanded views;
flows mixing fractions, exact integers and halves, values far outside the image (up to 1e30, past
the int32 range the kernel's casts saturate at). The tolerances are tests/model/test_warp.py's:

* forward: float32 bit for bit (NaN for NaN); float64 within 4 ulps of the largest feature (the op
  fuses its last multiply-add, the fallback rounds twice);
* grad_input / grad_flow (of the views the op sees): within 4 ulps of the magnitude accumulated
  into each element (:func:`grad_magnitudes`); equal non-finite values (inf from huge weights,
  NaN) count as equal;
* the output's strides are the same for both (layout follows the features);
* the forward does not depend on the layout of its inputs.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from model.warp import extension_available, warp
from tests.model.test_warp import assert_bitwise_equal, grad_magnitudes
from tests.property_settings import property_settings

#: hundreds of random cases per test: the full suite runs them, the fast subset does not
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not extension_available(), reason="model._C is not built: nothing to compare")]

LAYOUTS = ["contiguous", "transposed", "sliced", "channels_last", "expanded"]

FLOW_VALUES = st.one_of(
    st.floats(-3, 3, width=32),
    st.floats(-12, 12, width=32),
    st.integers(-8, 8).map(float),
    st.integers(-16, 16).map(lambda k: k / 2),
    st.sampled_from([1e3, -1e4, 2.0**24, -(2.0**24) - 2, 3e9, -3e9, 1e30, -1e30]),
)
FEATURE_VALUES = st.one_of(st.floats(-4, 4, width=32), st.sampled_from([0.0, 1.0, -1.0, 1e4]))


def with_layout(t: torch.Tensor, layout: str) -> torch.Tensor:
    """``t`` (a leaf) seen through a differentiable view of the given memory layout."""
    if layout == "transposed":
        return t.transpose(2, 3).contiguous().transpose(2, 3)
    if layout == "sliced":
        return torch.repeat_interleave(t, 2, dim=3)[..., ::2]
    if layout == "channels_last":
        return t.contiguous(memory_format=torch.channels_last)
    if layout == "expanded":  # stride 0 over the batch (every item is the first one)
        return t[:1].expand_as(t)
    return t


@st.composite
def warp_problems(draw):
    dtype = draw(st.sampled_from([torch.float32, torch.float64]))
    bsz, ch, h, w = (draw(st.integers(1, n)) for n in (3, 4, 6, 6))
    hf, wf = (h, w) if draw(st.booleans()) else (draw(st.integers(1, 6)), draw(st.integers(1, 6)))
    as_tensor = lambda a: torch.from_numpy(a).to(dtype)  # noqa: E731
    x = as_tensor(draw(arrays(np.float32, (bsz, ch, h, w), elements=FEATURE_VALUES)))
    flow = as_tensor(draw(arrays(np.float32, (bsz, 2, hf, wf), elements=FLOW_VALUES)))
    grad = as_tensor(draw(arrays(np.float32, (bsz, ch, hf, wf), elements=st.floats(-2, 2, width=32))))
    layouts = tuple(draw(st.sampled_from(LAYOUTS)) for _ in range(3))
    return x, flow, grad, layouts


def run(backend: str, x: torch.Tensor, flow: torch.Tensor, grad: torch.Tensor, layouts):
    """Output, and the gradients w.r.t. the (viewed) features and flow the op was given."""
    leaf_x, leaf_f = x.clone().requires_grad_(), flow.clone().requires_grad_()
    xv, fv = with_layout(leaf_x, layouts[0]), with_layout(leaf_f, layouts[1])
    xv.retain_grad()
    fv.retain_grad()
    out = warp(xv, fv, backend=backend)
    out.backward(with_layout(grad, layouts[2]))
    return out.detach(), xv.grad, fv.grad, xv.detach(), fv.detach()


def assert_within(actual, expected, bound, what):
    """|actual - expected| <= bound elementwise, where equal values (inf included) and NaN/NaN pass."""
    a, e = actual.double(), expected.double()
    ok = (a == e) | (torch.isnan(a) & torch.isnan(e)) | ((a - e).abs() <= bound)
    assert bool(ok.all()), f"{what}: {int((~ok).sum())} elements differ, e.g. {a[~ok][:3].tolist()} vs {e[~ok][:3].tolist()}"


@property_settings(max_examples=150)
@given(problem=warp_problems())
def test_compiled_op_matches_fallback(problem):
    x, flow, grad, layouts = problem
    out_op, gx_op, gf_op, xv, fv = run("compiled", x, flow, grad, layouts)
    out_py, gx_py, gf_py, _, _ = run("pytorch", x, flow, grad, layouts)
    eps = torch.finfo(x.dtype).eps
    assert out_op.stride() == out_py.stride(), layouts
    if x.dtype == torch.float32:
        assert_bitwise_equal(out_py, out_op, f"forward {layouts}")
    else:
        assert_within(out_py, out_op, 4 * eps * float(x.abs().max()), f"forward {layouts}")
    mag_gx, mag_gf = grad_magnitudes(with_layout(grad, layouts[2]), xv, fv)
    assert_within(gx_py, gx_op, 4 * eps * mag_gx, f"grad_input {layouts}")
    assert_within(gf_py, gf_op, 4 * eps * mag_gf, f"grad_flow {layouts}")


@property_settings(max_examples=80)
@given(problem=warp_problems(), backend=st.sampled_from(["compiled", "pytorch"]))
def test_forward_does_not_depend_on_layout(problem, backend):
    x, flow, _, layouts = problem
    xv, fv = with_layout(x, layouts[0]), with_layout(flow, layouts[1])
    reference = warp(xv.contiguous(), fv.contiguous(), backend=backend)
    assert_bitwise_equal(warp(xv, fv, backend=backend).contiguous(), reference, f"{backend} {layouts}")
