"""Feature warping with optical flow: the flownet2 ``Resample2d`` operator used by EVSS.

``warp(features, flow)`` samples ``features`` bilinearly at the positions the flow points to::

    out[b, c, y, x] = bilinear sample of features[b, c] at (x + flow[b, 0, y, x], y + flow[b, 1, y, x])

* ``flow`` is in pixels of the feature map, channels ``(dx, dy)``: output pixel ``(x, y)`` is found at
  ``(x + dx, y + dy)`` of the input (in EVSS, where each pixel of the current frame is in the
  previous one, on the 1/4-resolution grid; no rescaling happens here).
* Every bilinear corner index is clamped to the image separately (``xL = clamp(floor(xf))``,
  ``xR = clamp(floor(xf) + 1)``, likewise in y): positions outside the image take the border
  pixels' values; there is no zero padding.  A flow pointing far outside gives the border pixel.
* Shapes: features ``(B, C, H, W)``, flow ``(B, 2, Hf, Wf)`` -> output ``(B, C, Hf, Wf)``.  In EVSS
  ``Hf, Wf == H, W``; when they differ the output follows the flow and reads clamp to the
  features' ``H, W``.

Backends
--------
``torch.ops.evss.resample2d`` (C++/CUDA extension ``model._C``, built by ``setup.py``) when it is
importable, otherwise an exact pure-PyTorch implementation (:func:`warp_pytorch`).
:func:`warp_backend` says which one is active.  Force the fallback with ``warp(..., backend="pytorch")``
or the environment variable ``EVSS_WARP=pytorch`` (read once, when this module is imported;
``EVSS_WARP=compiled`` makes a missing extension an error instead of a silent fallback).

Both are differentiable w.r.t. features and flow, and ``torch.compile`` (also ``fullgraph=True``)
traces through the op (fake kernels are registered below).

Numerics (float32), identical to the original CUDA kernel (the golden tests check it on its outputs):
``xf = x + u``, ``a = xf - floor(xf)`` in float32; the top-left, top-right and bottom-left terms
``(1-a)(1-b)I_TL``, ``a(1-b)I_TR``, ``(1-a)b I_BL`` are computed in double and each rounded to float32,
accumulated in float32 in that order; the bottom-right term is ``fmaf(fl32(a*b), I_BR, acc)``.
The CPU op and the fallback reproduce this bit for bit (the fallback emulates the fused
multiply-add exactly with an error-free transformation).  Gradients follow the original's backward
kernels (see ``csrc/cpu/resample2d_cpu.cpp``); clamping is not differentiated, so the flow gradient
of a component whose two corners clamp to the same row/column is (up to rounding) zero.

dtypes: float32 and float64 everywhere; float16/bfloat16 natively on CUDA (float32 arithmetic
inside), while on CPU (and in the fallback) they are computed in float32 and the result is cast
back to the input dtype.  ``features`` and ``flow`` must have the same dtype and device.

Non-finite flow (same behaviour as the original; output NaN for that pixel, in every channel)::

    u or v NaN        -> fractional weight NaN, indices 0 -> output NaN (even where features are 0)
    u or v = +-inf    -> a = inf - inf = NaN -> output NaN (indices clamp to the border)
    |x + u| >= 2**24  -> finite: a = 0 and both corners clamp to the border -> the border pixel

In the backward, NaN/inf flow puts NaN into grad_features at the clamped corner pixels, and into
the OTHER component of that pixel's flow gradient: a NaN/inf u makes the fraction a NaN, which
weighs the v-gradient terms, while both x corners clamp to one column so the u-gradient terms cancel
(finite, ~0); likewise for v.  NaN/inf values in
``features`` propagate to every output that samples them (a zero weight times inf is NaN).
"""

from __future__ import annotations

import os
from typing import Optional

import torch
from torch import Tensor

__all__ = ["warp", "warp_backend", "warp_pytorch", "extension_available", "cuda_kernels_compiled"]

try:  # loads the operator library into torch.ops.evss
    from . import _C  # type: ignore[attr-defined]

    _EXTENSION_ERROR: Optional[BaseException] = None
except (ImportError, OSError) as exc:  # not built, or built against another torch
    _C = None
    _EXTENSION_ERROR = exc

_ENV = "EVSS_WARP"
# Read once, at import: torch.compile specialises on it like on any other module constant.
_DEFAULT_BACKEND = os.environ.get(_ENV, "auto")


def extension_available() -> bool:
    """True when the compiled operator ``torch.ops.evss.resample2d`` is loaded."""
    return _C is not None and hasattr(torch.ops.evss, "resample2d")


def cuda_kernels_compiled() -> bool:
    """True when the loaded extension contains the CUDA kernels."""
    return extension_available() and bool(torch.ops.evss._cuda_compiled())


def _requested_backend(backend: Optional[str]) -> str:
    choice = (backend if backend is not None else _DEFAULT_BACKEND).strip().lower()
    if choice in ("", "auto"):
        return "compiled" if extension_available() else "pytorch"
    if choice in ("pytorch", "fallback", "torch"):
        return "pytorch"
    if choice in ("compiled", "op", "extension"):
        if not extension_available():
            raise RuntimeError(
                "warp: the compiled operator was requested but model._C is not available "
                f"({_EXTENSION_ERROR!r}); build it with `pip install --no-build-isolation -e .`"
            )
        return "compiled"
    raise ValueError(f"warp: unknown backend {choice!r} (use 'auto', 'compiled' or 'pytorch'; "
                     f"env {_ENV})")


def warp_backend(backend: Optional[str] = None) -> str:
    """Which implementation :func:`warp` uses now: ``"compiled (cpu+cuda)"``, ``"compiled (cpu)"``
    or ``"pytorch fallback"`` (extension missing, or forced with ``EVSS_WARP=pytorch``)."""
    if _requested_backend(backend) == "pytorch":
        return "pytorch fallback"
    return "compiled (cpu+cuda)" if cuda_kernels_compiled() else "compiled (cpu)"


def _check_args(features: Tensor, flow: Tensor) -> None:
    if features.dim() != 4:
        raise ValueError(f"warp: features must be (B, C, H, W), got shape {tuple(features.shape)}")
    if flow.dim() != 4 or flow.shape[1] != 2:
        raise ValueError(f"warp: flow must be (B, 2, H, W) with channels (dx, dy), got shape {tuple(flow.shape)}")
    if features.shape[0] != flow.shape[0]:
        raise ValueError(f"warp: features and flow must have the same batch size, got "
                         f"{tuple(features.shape)} and {tuple(flow.shape)}")
    if features.device != flow.device:
        raise ValueError(f"warp: features and flow must be on the same device, got {features.device} and {flow.device}")
    if features.dtype != flow.dtype:
        raise TypeError(f"warp: features and flow must have the same dtype, got {features.dtype} and {flow.dtype}")
    if not features.dtype.is_floating_point:
        raise TypeError(f"warp: floating point tensors required, got {features.dtype}")


def warp(features: Tensor, flow: Tensor, *, backend: Optional[str] = None) -> Tensor:
    """Warp ``features`` (B, C, H, W) with ``flow`` (B, 2, Hf, Wf) -> (B, C, Hf, Wf).

    ``out[b, c, y, x]`` is the bilinear sample of ``features[b, c]`` at ``(x + flow[b, 0, y, x],
    y + flow[b, 1, y, x])`` (pixels; channel 0 = dx, 1 = dy), corner indices clamped to the image
    (border values outside, never zeros).  Differentiable w.r.t. both inputs.  ``backend``:
    ``None`` (``EVSS_WARP`` or ``"auto"``), ``"compiled"`` or ``"pytorch"``.  See the module
    docstring for numerics, dtypes and NaN/inf behaviour.
    """
    _check_args(features, flow)
    use_op = _requested_backend(backend) == "compiled"
    dtype = features.dtype
    if dtype in (torch.float16, torch.bfloat16) and (not use_op or features.device.type == "cpu"):
        # CPU kernel and fallback: float32 arithmetic, result cast back.
        out = warp(features.float(), flow.float(), backend="compiled" if use_op else "pytorch")
        return out.to(dtype)
    if use_op:
        return torch.ops.evss.resample2d.default(features, flow)
    return warp_pytorch(features, flow)


# ------------------------------------------------------------------------------------------------
# Pure-PyTorch implementation


def _layout(t: Tensor) -> torch.memory_format:
    """channels_last for channels_last tensors (that are not also contiguous), else contiguous:
    the rule the C++ kernels use for their results."""
    if t.dim() == 4 and not t.is_contiguous() and t.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format


def _compute_dtype(t: Tensor) -> torch.dtype:
    return torch.float64 if t.dtype == torch.float64 else torch.float32


def _clamp_index(f: Tensor, n: int) -> Tensor:
    """Corner index from floor(xf) (or floor(xf) + 1): NaN and <= 0 -> 0, >= n - 1 -> n - 1."""
    f = torch.where(f > 0, f, torch.zeros_like(f))  # NaN > 0 is False
    return f.clamp(max=n - 1).to(torch.int64)


def _int_as(f: Tensor) -> Tensor:
    """f's type(int(f)) with CUDA semantics: truncation, saturation at the int32 range, NaN -> 0."""
    lim_hi = float(2**31 - 1) if f.dtype == torch.float64 else float(2**31)  # float32(INT32_MAX) = 2^31
    g = torch.where(torch.isnan(f), torch.zeros_like(f), f)
    return torch.trunc(g.clamp(min=-float(2**31), max=lim_hi))


def _geometry(flow: Tensor, height: int, width: int, truncated: bool = False):
    """Fractions (B, 1, N) and flat corner indices (B, 1, N) x 4 of every flow pixel."""
    bsz, _, hf, wf = flow.shape
    xs = torch.arange(wf, device=flow.device, dtype=flow.dtype).view(1, 1, wf)
    ys = torch.arange(hf, device=flow.device, dtype=flow.dtype).view(1, hf, 1)
    xf = xs + flow[:, 0]
    yf = ys + flow[:, 1]
    fx = torch.floor(xf)
    fy = torch.floor(yf)
    if truncated:
        a = xf - _int_as(xf)
        b = yf - _int_as(yf)
    else:
        a = xf - fx
        b = yf - fy
    x_l = _clamp_index(fx, width)
    x_r = _clamp_index(fx + 1, width)
    y_t = _clamp_index(fy, height)
    y_b = _clamp_index(fy + 1, height)
    idx = [(yy * width + xx).reshape(bsz, 1, hf * wf) for yy, xx in ((y_t, x_l), (y_t, x_r), (y_b, x_l), (y_b, x_r))]
    return a.reshape(bsz, 1, -1), b.reshape(bsz, 1, -1), idx


def _fma_f32(x: Tensor, y: Tensor, z: Tensor) -> Tensor:
    """Exact float32 fused multiply-add fl32(x * y + z) for float32 tensors.

    x * y is exact in double; the double sum s = fl64(P + z) is corrected with its exact rounding
    error e (TwoSum): the only case where rounding s to float32 differs from rounding the exact
    sum is s lying exactly halfway between two floats while e != 0, and moving s one double ulp
    towards e settles it (it cannot cross any other float32 rounding boundary)."""
    p = x.double() * y.double()
    zd = z.double()
    s = p + zd
    bv = s - p
    e = (p - (s - bv)) + (zd - bv)
    toward = torch.where(e > 0, torch.full_like(s, float("inf")), torch.full_like(s, float("-inf")))
    fix = (e != 0) & torch.isfinite(e)
    return torch.where(fix, torch.nextafter(s, toward), s).float()


def _forward_pytorch(inp: Tensor, flow: Tensor) -> Tensor:
    bsz, ch, height, width = inp.shape
    hf, wf = flow.shape[2], flow.shape[3]
    out_shape = (bsz, ch, hf, wf)
    if bsz * ch * hf * wf == 0:
        return torch.empty(out_shape, dtype=inp.dtype, device=inp.device).contiguous(memory_format=_layout(inp))
    if height == 0 or width == 0:
        raise ValueError(f"warp: features must have a non-empty image to sample from, got shape {tuple(inp.shape)}")
    a, b, idx = _geometry(flow, height, width)
    flat = inp.reshape(bsz, ch, height * width)
    n = hf * wf
    corners = [torch.gather(flat, 2, i.expand(bsz, ch, n)) for i in idx]
    a64, b64 = a.double(), b.double()
    w_tl = (1 - a64) * (1 - b64)
    w_tr = a64 * (1 - b64)
    w_bl = (1 - a64) * b64
    acc = torch.zeros_like(corners[0])
    for w, corner in zip((w_tl, w_tr, w_bl), corners[:3]):
        acc = acc + (w * corner.double()).to(inp.dtype)
    w_br = a * b
    if inp.dtype == torch.float32:
        out = _fma_f32(w_br.expand_as(acc), corners[3], acc)
    else:  # float64: two roundings instead of one fused operation
        out = acc + w_br * corners[3]
    return out.reshape(out_shape).contiguous(memory_format=_layout(inp))


def _backward_input_pytorch(grad: Tensor, inp: Tensor, flow: Tensor) -> Tensor:
    bsz, ch, height, width = inp.shape
    n = flow.shape[2] * flow.shape[3]
    if grad.numel() == 0 or inp.numel() == 0:
        return torch.zeros_like(inp, memory_format=_layout(inp))
    a, b, idx = _geometry(flow, height, width, truncated=True)
    weights = ((1 - a) * (1 - b), a * (1 - b), (1 - a) * b, a * b)
    g = grad.reshape(bsz, ch, n)
    # Each term is the kernel's (rounded) w * g; the sum is accumulated in float64 and rounded once.
    acc = torch.zeros(bsz, ch, height * width, dtype=torch.float64, device=inp.device)
    for w, i in zip(weights, idx):
        acc.scatter_add_(2, i.expand(bsz, ch, n), (w * g).double())
    return acc.to(inp.dtype).reshape(inp.shape).contiguous(memory_format=_layout(inp))


def _backward_flow_pytorch(grad: Tensor, inp: Tensor, flow: Tensor) -> Tensor:
    bsz, ch, height, width = inp.shape
    hf, wf = flow.shape[2], flow.shape[3]
    if flow.numel() == 0:
        return torch.empty_like(flow, memory_format=_layout(flow))
    if ch == 0:
        return torch.zeros_like(flow, memory_format=_layout(flow))
    a, b, idx = _geometry(flow, height, width)
    n = hf * wf
    flat = inp.reshape(bsz, ch, height * width)
    i_tl, i_tr, i_bl, i_br = (torch.gather(flat, 2, i.expand(bsz, ch, n)).double() for i in idx)
    g = grad.reshape(bsz, ch, n)
    gamma_u, gamma_v = 1 - b, 1 - a
    pu, qu = (gamma_u * g).double(), ((1 - gamma_u) * g).double()
    pv, qv = (gamma_v * g).double(), ((1 - gamma_v) * g).double()
    # The kernel's terms with its rounded products, summed over channels in float64.
    gu = (pu * i_tr - pu * i_tl + qu * i_br - qu * i_bl).sum(1)
    gv = (pv * i_bl - pv * i_tl + qv * i_br - qv * i_tr).sum(1)
    out = torch.stack((gu, gv), 1).to(flow.dtype).reshape(flow.shape)
    return out.contiguous(memory_format=_layout(flow))


class _Resample2dPyTorch(torch.autograd.Function):
    @staticmethod
    def forward(inp: Tensor, flow: Tensor) -> Tensor:  # type: ignore[override]
        return _forward_pytorch(inp, flow)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(*inputs)

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        inp, flow = ctx.saved_tensors
        grad_inp = _backward_input_pytorch(grad, inp, flow) if ctx.needs_input_grad[0] else None
        grad_flow = _backward_flow_pytorch(grad, inp, flow) if ctx.needs_input_grad[1] else None
        return grad_inp, grad_flow


def warp_pytorch(features: Tensor, flow: Tensor) -> Tensor:
    """The pure-PyTorch implementation of :func:`warp` (float32/float64; same results as the
    CPU op: forward bit-exact in float32, gradients within a few ulps).  Works on any device."""
    _check_args(features, flow)
    if features.dtype in (torch.float16, torch.bfloat16):
        return warp_pytorch(features.float(), flow.float()).to(features.dtype)
    return _Resample2dPyTorch.apply(features, flow)


# ------------------------------------------------------------------------------------------------
# Autograd and fake (meta) kernels of the compiled operator.


def _register_python_kernels() -> None:
    if _C is None or getattr(_C, "_evss_python_kernels", False):
        return

    @torch.library.register_fake("evss::resample2d")
    def _resample2d_fake(inp, flow):
        torch._check(inp.dim() == 4 and flow.dim() == 4 and flow.shape[1] == 2,
                     lambda: "evss::resample2d: input (B, C, H, W) and flow (B, 2, H, W) expected")
        torch._check(inp.shape[0] == flow.shape[0], lambda: "evss::resample2d: batch sizes differ")
        return torch.empty((flow.shape[0], inp.shape[1], flow.shape[2], flow.shape[3]),
                           dtype=inp.dtype, device=inp.device, memory_format=_layout(inp))

    @torch.library.register_fake("evss::resample2d_backward_input")
    def _backward_input_fake(grad, inp, flow):
        return torch.empty(inp.shape, dtype=inp.dtype, device=inp.device, memory_format=_layout(inp))

    @torch.library.register_fake("evss::resample2d_backward_flow")
    def _backward_flow_fake(grad, inp, flow):
        return torch.empty(flow.shape, dtype=flow.dtype, device=flow.device, memory_format=_layout(flow))

    def _setup_context(ctx, inputs, output):
        inp, flow = inputs
        ctx.save_for_backward(inp, flow)

    def _backward(ctx, grad):
        inp, flow = ctx.saved_tensors
        grad_inp = grad_flow = None
        if ctx.needs_input_grad[0]:
            grad_inp = torch.ops.evss.resample2d_backward_input.default(grad, inp, flow)
        if ctx.needs_input_grad[1]:
            grad_flow = torch.ops.evss.resample2d_backward_flow.default(grad, inp, flow)
        return grad_inp, grad_flow

    torch.library.register_autograd("evss::resample2d", _backward, setup_context=_setup_context)
    _C._evss_python_kernels = True


_register_python_kernels()
