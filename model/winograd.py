"""3×3 convolutions by Winograd's minimal filtering F(4×4, 3×3) on CPU (Lavin & Gray, 2016).

A 3×3 convolution with stride 1 and padding 1 computes each 4×4 output tile from the 6×6 input
patch around it with 36 multiplications per channel pair instead of 144:

    y = Aᵀ [ (G g Gᵀ) ⊙ (Bᵀ d B) ] A            (summed over input channels)

The filter transform ``U = G g Gᵀ`` (36×C×K) is computed once (:func:`winograd_weight`); the sum over
channels becomes 36 matrix products of (tiles × C) by (C × K), which run near the CPU's fp32 peak,
so a layer costs about a quarter of the direct convolution's FLOPs plus two cheap transforms.
``torch.ops.evss.winograd_conv3x3`` (``csrc/cpu/winograd_cpu.cpp``) does this in cache-sized
chunks of tiles; :func:`winograd_conv3x3_pytorch` is the same algorithm in plain PyTorch (the test
reference, and what runs without the extension when asked for explicitly).

5×5 convolutions with stride 2 and padding 2 (FlowNet's conv2 and conv3) get the same treatment: output
pixel (y, x) reads input rows 2y − 2 … 2y + 2, which are rows y − 1 … y + 1 of the space-to-depth
rearrangement of the input (block 2: pixel (y, x) holds the four input pixels (2y + ry, 2x + rx) as
4·C channels, phase-major). So the layer is a 3×3 convolution of that rearrangement with a rearranged
4C-channel filter (:func:`space_to_depth_filter`; 11 of its 36 taps per channel are zero), which the
operator reads in place (``space_to_depth=2``): 9·C·K multiplications per output instead of 25·C·K.

Numbers: the transforms compute in float32 (bfloat16 maps are widened on load, rounded once on
store); the matrix products run in the transformed filter's dtype. With float32 products the
interpolation points 0, ±1, ±2, ∞ make the result differ from a direct convolution by rounding
that is 10–40× larger than the direct one's, about 1e-6 of the output's magnitude: a 128→128 layer
on unit-scale input is within 5e-5 of the float64 result (direct: 1.3e-6). With bfloat16 products
(the fast mode's; oneDNN multiplies bf16 ~3× faster than fp32 on CPUs with AVX512-BF16) V, U and M
are rounded to bf16 and the transforms amplify that rounding: ~2.5 % relative RMS error per layer,
~15× a bf16 direct convolution's (0.17 %). Only CPUs gain: on CUDA cuDNN already chooses Winograd
where it pays, so :class:`WinogradConv2d` calls ``F.conv2d`` there.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.flop_counter import register_flop_formula

try:  # loads the operator library into torch.ops.evss
    from . import _C  # type: ignore[attr-defined]
except (ImportError, OSError):  # not built, or built against another torch
    _C = None

__all__ = ["winograd_weight", "space_to_depth_filter", "winograd_conv3x3", "winograd_conv3x3_pytorch",
           "winograd_op_available", "WinogradConv2d", "is_winograd_eligible"]

# Bᵀ (6×6), G (6×3) and Aᵀ (4×6) of F(4×4, 3×3) with the points 0, 1, −1, 2, −2 and ∞.
_BT = ((4, 0, -5, 0, 1, 0), (0, -4, -4, 1, 1, 0), (0, 4, -4, -1, 1, 0),
       (0, -2, -1, 2, 1, 0), (0, 2, -1, -2, 1, 0), (0, 4, 0, -5, 0, 1))
_G = ((1 / 4, 0, 0), (-1 / 6, -1 / 6, -1 / 6), (-1 / 6, 1 / 6, -1 / 6),
      (1 / 24, 1 / 12, 1 / 6), (1 / 24, -1 / 12, 1 / 6), (0, 0, 1))
_AT = ((1, 1, 1, 1, 1, 0), (0, 1, -1, 2, -2, 0), (0, 1, 1, 4, 4, 0), (0, 1, -1, 8, -8, 1))


def _matrix(rows: tuple, like: Tensor) -> Tensor:
    return torch.tensor(rows, dtype=like.dtype, device=like.device)


def winograd_op_available() -> bool:
    """True when ``torch.ops.evss.winograd_conv3x3`` (compiled extension) is loaded."""
    return _C is not None and hasattr(torch.ops.evss, "winograd_conv3x3")


def winograd_weight(weight: Tensor, dtype: torch.dtype = torch.float32) -> Tensor:
    """The transformed filter ``U[ξ, c, k] = (G g[k, c] Gᵀ)[ξ]``: 36×C×K from a K×C×3×3 filter, computed
    in float64 and rounded once to ``dtype`` (float32, or bfloat16 for bfloat16 matrix products)."""
    if weight.dim() != 4 or weight.shape[-2:] != (3, 3):
        raise ValueError(f"winograd_weight: expected a (K, C, 3, 3) filter, got shape {tuple(weight.shape)}")
    if dtype not in (torch.float32, torch.bfloat16):
        raise ValueError(f"winograd_weight: dtype must be float32 or bfloat16, got {dtype}")
    w = weight.detach().double()
    g = _matrix(_G, w)
    u = torch.einsum("ai,kcij,bj->abck", g, w, g)
    return u.reshape(36, weight.shape[1], weight.shape[0]).to(dtype).contiguous()


def space_to_depth_filter(weight: Tensor) -> Tensor:
    """The K×4C×3×3 filter whose 3×3 convolution of the space-to-depth rearrangement of ``x`` (block 2,
    phase-major channels) equals ``F.conv2d(x, weight, stride=2, padding=2)`` for a K×C×5×5 ``weight``:
    tap (ty, tx) of phase (ry, rx) is ``weight[..., 2·ty + ry, 2·tx + rx]`` (zero past 5)."""
    if weight.dim() != 4 or weight.shape[-2:] != (5, 5):
        raise ValueError(f"space_to_depth_filter: expected a (K, C, 5, 5) filter, got shape {tuple(weight.shape)}")
    k, c = weight.shape[:2]
    taps = F.pad(weight, (0, 1, 0, 1)).view(k, c, 3, 2, 3, 2)  # (K, C, ty, ry, tx, rx)
    return taps.permute(0, 3, 5, 1, 2, 4).reshape(k, 4 * c, 3, 3)


def _space_to_depth(x: Tensor, s: int) -> Tensor:
    """B×C×H×W → B×(s²C)×⌈H/s⌉×⌈W/s⌉, channel (ry·s + rx)·C + c = x[:, c, s·y + ry, s·x + rx] (zero past the edge)."""
    b, c, h, w = x.shape
    hs, ws = -(-h // s), -(-w // s)
    x = F.pad(x, (0, ws * s - w, 0, hs * s - h)).reshape(b, c, hs, s, ws, s)
    return x.permute(0, 3, 5, 1, 2, 4).reshape(b, s * s * c, hs, ws)


def winograd_conv3x3_pytorch(x: Tensor, weight_winograd: Tensor, bias: Tensor | None = None,
                             space_to_depth: int = 1) -> Tensor:
    """``F.conv2d(x, g, bias, padding=1)`` computed as the operator does, in plain PyTorch (transforms in
    float32, matrix products in ``weight_winograd``'s dtype; returns the input's dtype).
    ``weight_winograd`` is :func:`winograd_weight` of ``g``; ``space_to_depth=2`` convolves the
    rearranged input (see the module docstring)."""
    if space_to_depth > 1:
        return winograd_conv3x3_pytorch(_space_to_depth(x, space_to_depth), weight_winograd, bias)
    b, c, h, w = x.shape
    k = weight_winograd.shape[2]
    th, tw = -(-h // 4), -(-w // 4)
    xf = x.float()
    patches = F.pad(xf, (1, 4 * tw + 1 - w, 1, 4 * th + 1 - h)).unfold(2, 6, 4).unfold(3, 6, 4)
    bt = _matrix(_BT, xf)
    v = torch.einsum("ai,bcxyij,dj->adbxyc", bt, patches, bt).reshape(36, b * th * tw, c)
    m = torch.bmm(v.to(weight_winograd.dtype), weight_winograd).float().reshape(6, 6, b, th, tw, k)
    at = _matrix(_AT, xf)
    y = torch.einsum("ai,ijbxyk,cj->bkxayc", at, m, at).reshape(b, k, 4 * th, 4 * tw)[:, :, :h, :w]
    if bias is not None:
        y = y + bias.float().view(1, -1, 1, 1)
    return y.to(x.dtype)


def winograd_conv3x3(x: Tensor, weight_winograd: Tensor, bias: Tensor | None = None,
                     space_to_depth: int = 1) -> Tensor:
    """3×3 convolution (stride 1, padding 1) of B×C×H×W ``x`` (float32 or bfloat16), or of its
    space-to-depth rearrangement, with a transformed filter; the compiled operator when loaded, else
    :func:`winograd_conv3x3_pytorch`. B×K×⌈H/s⌉×⌈W/s⌉ out."""
    if winograd_op_available():
        return torch.ops.evss.winograd_conv3x3(x, weight_winograd, bias, space_to_depth)
    return winograd_conv3x3_pytorch(x, weight_winograd, bias, space_to_depth)


#: (kernel, stride, padding) of the convolutions Winograd replaces, and their space-to-depth block.
_FORMS = {((3, 3), (1, 1), (1, 1)): 1, ((5, 5), (2, 2), (2, 2)): 2}


def is_winograd_eligible(conv: nn.Module, min_channels: int = 16, max_channel_pairs: int | None = None) -> bool:
    """A plain convolution (no dilation or groups, zero padding) that is 3×3 with stride 1 and padding 1,
    or 5×5 with stride 2 and padding 2, with at least ``min_channels`` input and output channels
    (thinner layers gain nothing from the matrix products) and, when given, at most
    ``max_channel_pairs`` = C·K. The transformed filter holds 36·C·K floats (3×3, 4× the filter;
    5×5: 144·C·K, 5.8×): 271 MB for all of EVSS in float32, of which the six layers with 384 to 512
    channels (on the 1/32 and 1/64 grids) hold 70 % for 10–25 % of the time Winograd saves (keyframe,
    non-keyframe step); ``max_channel_pairs=256 * 256`` leaves them direct."""
    return (type(conv) is nn.Conv2d and (conv.kernel_size, conv.stride, conv.padding) in _FORMS
            and conv.dilation == (1, 1) and conv.groups == 1 and conv.padding_mode == "zeros"
            and min(conv.in_channels, conv.out_channels) >= min_channels
            and (max_channel_pairs is None or conv.in_channels * conv.out_channels <= max_channel_pairs))


class WinogradConv2d(nn.Module):
    """Inference stand-in for an eligible ``nn.Conv2d`` (:func:`is_winograd_eligible`): Winograd on CPU
    when the compiled operator is loaded, ``F.conv2d`` with the original filter otherwise (GPUs, where
    cuDNN picks its own algorithm; other dtypes). Keeps ``weight`` and ``bias`` as they were;
    ``products`` is the matrix products' dtype (float32, or bfloat16: faster, less exact)."""

    def __init__(self, conv: nn.Conv2d, products: torch.dtype = torch.float32):
        super().__init__()
        if not is_winograd_eligible(conv, min_channels=1):
            raise ValueError("WinogradConv2d: not a 3×3 (stride 1, padding 1) or 5×5 (stride 2, padding 2) "
                             f"convolution: {conv}")
        self.in_channels, self.out_channels = conv.in_channels, conv.out_channels
        self.kernel_size, self.stride, self.padding = conv.kernel_size, conv.stride, conv.padding
        self.space_to_depth = _FORMS[(conv.kernel_size, conv.stride, conv.padding)]
        self.weight = conv.weight
        self.bias = conv.bias
        taps = space_to_depth_filter(conv.weight) if self.space_to_depth > 1 else conv.weight
        self.register_buffer("weight_winograd", winograd_weight(taps, products), persistent=False)

    def extra_repr(self) -> str:
        products = str(self.weight_winograd.dtype).removeprefix("torch.")
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, F(4x4, 3x3), space_to_depth={self.space_to_depth}, products={products}")

    def forward(self, x: Tensor) -> Tensor:
        if x.device.type == "cpu" and x.dtype in (torch.float32, torch.bfloat16) and winograd_op_available():
            # the operator widens a bf16 bias
            return torch.ops.evss.winograd_conv3x3(x, self.weight_winograd, self.bias, self.space_to_depth)
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding)


def _register_python_kernels() -> None:
    """The fake kernel (``torch.compile``), an autograd kernel that says the operator is inference-only, and
    the FLOP count of the direct convolution it replaces (``torch.utils.flop_counter``; the operator itself
    multiplies a quarter of that), so FLOP rates compare with the direct path's."""
    if not winograd_op_available() or getattr(_C, "_evss_winograd_kernels", False):
        return

    @torch.library.register_fake("evss::winograd_conv3x3")
    def _winograd_conv3x3_fake(x, weight_winograd, bias, space_to_depth=1):
        s = space_to_depth
        torch._check(x.dim() == 4 and weight_winograd.dim() == 3 and weight_winograd.shape[0] == 36
                     and weight_winograd.shape[1] == s * s * x.shape[1],
                     lambda: "evss::winograd_conv3x3: input (B, C, H, W) and weight (36, s*s*C, K) expected")
        shape = (x.shape[0], weight_winograd.shape[2], (x.shape[2] + s - 1) // s, (x.shape[3] + s - 1) // s)
        return x.new_empty(shape).contiguous(memory_format=torch.channels_last)

    def _setup_context(ctx, inputs, output):
        pass

    def _backward(ctx, grad):
        raise NotImplementedError("evss::winograd_conv3x3 is inference-only (model.inference.optimize_for_inference); "
                                  "train the network with its nn.Conv2d layers")

    torch.library.register_autograd("evss::winograd_conv3x3", _backward, setup_context=_setup_context)

    @register_flop_formula(torch.ops.evss.winograd_conv3x3)
    def _flops(x_shape, weight_shape, bias_shape, space_to_depth=1, out_shape=None, **kwargs) -> int:
        # the direct convolution it stands for: 3×3, or 5×5 with stride 2 (the 11 zero taps per channel not counted)
        s = space_to_depth
        taps = 9 if s == 1 else 25
        outputs = x_shape[0] * -(-x_shape[2] // s) * -(-x_shape[3] // s)
        return 2 * outputs * x_shape[1] * weight_shape[2] * taps

    _C._evss_winograd_kernels = True


_register_python_kernels()
