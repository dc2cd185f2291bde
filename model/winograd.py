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

__all__ = ["winograd_weight", "winograd_conv3x3", "winograd_conv3x3_pytorch", "winograd_op_available",
           "WinogradConv2d", "is_winograd_eligible"]

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


def winograd_conv3x3_pytorch(x: Tensor, weight_winograd: Tensor, bias: Tensor | None = None) -> Tensor:
    """``F.conv2d(x, g, bias, padding=1)`` computed as the operator does, in plain PyTorch (transforms in
    float32, matrix products in ``weight_winograd``'s dtype; returns the input's dtype).
    ``weight_winograd`` is :func:`winograd_weight` of ``g``."""
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


def winograd_conv3x3(x: Tensor, weight_winograd: Tensor, bias: Tensor | None = None) -> Tensor:
    """3×3 convolution (stride 1, padding 1) of B×C×H×W ``x`` (float32 or bfloat16) with a transformed
    filter; the compiled operator when loaded, else :func:`winograd_conv3x3_pytorch`. B×K×H×W out."""
    if winograd_op_available():
        return torch.ops.evss.winograd_conv3x3(x, weight_winograd, bias)
    return winograd_conv3x3_pytorch(x, weight_winograd, bias)


def is_winograd_eligible(conv: nn.Module, min_channels: int = 16, max_channel_pairs: int | None = None) -> bool:
    """A plain 3×3 convolution with stride 1, padding 1, no dilation or groups, at least
    ``min_channels`` input and output channels (thinner layers gain nothing from the matrix products)
    and, when given, at most ``max_channel_pairs`` = C·K. The transformed filter holds 36·C·K floats,
    4× the filter: 268 MB for all of EVSS, of which the six layers with 384 to 512 channels (on the 1/32
    and 1/64 grids) hold 70 % for 10–25 % of the time Winograd saves (keyframe, non-keyframe step);
    ``max_channel_pairs=256 * 256`` leaves them direct."""
    return (type(conv) is nn.Conv2d and conv.kernel_size == (3, 3) and conv.stride == (1, 1)
            and conv.padding == (1, 1) and conv.dilation == (1, 1) and conv.groups == 1
            and conv.padding_mode == "zeros"
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
            raise ValueError(f"WinogradConv2d: not a 3×3, stride 1, padding 1 convolution: {conv}")
        self.in_channels, self.out_channels = conv.in_channels, conv.out_channels
        self.weight = conv.weight
        self.bias = conv.bias
        self.register_buffer("weight_winograd", winograd_weight(conv.weight, products), persistent=False)

    def extra_repr(self) -> str:
        products = str(self.weight_winograd.dtype).removeprefix("torch.")
        return (f"{self.in_channels}, {self.out_channels}, kernel_size=(3, 3), padding=(1, 1), F(4x4, 3x3), "
                f"products={products}")

    def forward(self, x: Tensor) -> Tensor:
        if x.device.type == "cpu" and x.dtype in (torch.float32, torch.bfloat16) and winograd_op_available():
            return torch.ops.evss.winograd_conv3x3(x, self.weight_winograd, self.bias)  # widens a bf16 bias
        return F.conv2d(x, self.weight, self.bias, padding=1)


def _register_python_kernels() -> None:
    """The fake kernel (``torch.compile``), an autograd kernel that says the operator is inference-only, and
    the FLOP count of the direct convolution it replaces (``torch.utils.flop_counter``; the operator itself
    multiplies a quarter of that), so FLOP rates compare with the direct path's."""
    if not winograd_op_available() or getattr(_C, "_evss_winograd_kernels", False):
        return

    @torch.library.register_fake("evss::winograd_conv3x3")
    def _winograd_conv3x3_fake(x, weight_winograd, bias):
        torch._check(x.dim() == 4 and weight_winograd.dim() == 3 and weight_winograd.shape[0] == 36
                     and weight_winograd.shape[1] == x.shape[1],
                     lambda: "evss::winograd_conv3x3: input (B, C, H, W) and weight (36, C, K) expected")
        shape = (x.shape[0], weight_winograd.shape[2], x.shape[2], x.shape[3])
        return x.new_empty(shape).contiguous(memory_format=torch.channels_last)

    def _setup_context(ctx, inputs, output):
        pass

    def _backward(ctx, grad):
        raise NotImplementedError("evss::winograd_conv3x3 is inference-only (model.inference.optimize_for_inference); "
                                  "train the network with its nn.Conv2d layers")

    torch.library.register_autograd("evss::winograd_conv3x3", _backward, setup_context=_setup_context)

    @register_flop_formula(torch.ops.evss.winograd_conv3x3)
    def _flops(x_shape, weight_shape, bias_shape, out_shape=None, **kwargs) -> int:
        return 2 * x_shape[0] * x_shape[2] * x_shape[3] * weight_shape[1] * weight_shape[2] * 9

    _C._evss_winograd_kernels = True


_register_python_kernels()
