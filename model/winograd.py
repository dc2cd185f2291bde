"""3×3 convolutions by Winograd's minimal filtering F(4×4, 3×3) and F(6×6, 3×3) on CPU (Lavin & Gray, 2016).

A 3×3 convolution with stride 1 and padding 1 computes each 4×4 output tile from the 6×6 input
patch around it with 36 multiplications per channel pair instead of 144:

    y = Aᵀ [ (G g Gᵀ) ⊙ (Bᵀ d B) ] A            (summed over input channels)

The filter transform ``U = G g Gᵀ`` (36×C×K) is computed once (:func:`winograd_weight`); the sum over
channels becomes 36 matrix products of (tiles × C) by (C × K), which run near the CPU's fp32 peak,
so a layer costs about a quarter of the direct convolution's FLOPs plus two cheap transforms.
F(6×6, 3×3) does the same with 8×8 patches and 64 products per 6×6 tile (5.1× fewer multiplications
than direct, 1.27× fewer than F(4×4, 3×3)); ``U``'s first dimension, 36 or 64, names the form.
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
on unit-scale input is within 5e-5 of the float64 result (direct: 1.3e-6); F(6×6, 3×3), with the
points ±1/2 as well, about twice that (relative RMS 4.4e-6 against 2.3e-6). With bfloat16 products
(the fast mode's; oneDNN multiplies bf16 ~3× faster than fp32 on CPUs with AVX512-BF16) V, U and M
are rounded to bf16 and the transforms amplify that rounding: ~2.5–3 % relative RMS error per layer
with F(4×4, 3×3), ~15× a bf16 direct convolution's (0.2–0.3 %), and 6.8 % with F(6×6, 3×3), which
is therefore used with float32 products only (:func:`default_tile`). Only CPUs gain: on CUDA cuDNN
already chooses Winograd where it pays, so :class:`WinogradConv2d` calls ``F.conv2d`` there.
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

__all__ = ["winograd_weight", "winograd_tile", "space_to_depth_filter", "winograd_conv3x3", "winograd_conv3x3_pytorch",
           "winograd_op_available", "WinogradConv2d", "is_winograd_eligible", "default_tile", "F6_MAX_CHANNEL_PAIRS"]

# Bᵀ (6×6), G (6×3) and Aᵀ (4×6) of F(4×4, 3×3) with the points 0, 1, −1, 2, −2 and ∞.
_BT4 = ((4, 0, -5, 0, 1, 0), (0, -4, -4, 1, 1, 0), (0, 4, -4, -1, 1, 0),
        (0, -2, -1, 2, 1, 0), (0, 2, -1, -2, 1, 0), (0, 4, 0, -5, 0, 1))
_G4 = ((1 / 4, 0, 0), (-1 / 6, -1 / 6, -1 / 6), (-1 / 6, 1 / 6, -1 / 6),
       (1 / 24, 1 / 12, 1 / 6), (1 / 24, -1 / 12, 1 / 6), (0, 0, 1))
_AT4 = ((1, 1, 1, 1, 1, 0), (0, 1, -1, 2, -2, 0), (0, 1, 1, 4, 4, 0), (0, 1, -1, 8, -8, 1))
# Bᵀ (8×8), G (8×3) and Aᵀ (6×8) of F(6×6, 3×3) with the points 0, 1, −1, 2, −2, 1/2, −1/2 and ∞.
_BT6 = ((1, 0, -21 / 4, 0, 21 / 4, 0, -1, 0), (0, 1, 1, -17 / 4, -17 / 4, 1, 1, 0),
        (0, -1, 1, 17 / 4, -17 / 4, -1, 1, 0), (0, 1 / 2, 1 / 4, -5 / 2, -5 / 4, 2, 1, 0),
        (0, -1 / 2, 1 / 4, 5 / 2, -5 / 4, -2, 1, 0), (0, 2, 4, -5 / 2, -5, 1 / 2, 1, 0),
        (0, -2, 4, 5 / 2, -5, -1 / 2, 1, 0), (0, -1, 0, 21 / 4, 0, -21 / 4, 0, 1))
_G6 = ((1, 0, 0), (-2 / 9, -2 / 9, -2 / 9), (-2 / 9, 2 / 9, -2 / 9), (1 / 90, 1 / 45, 2 / 45),
       (1 / 90, -1 / 45, 2 / 45), (32 / 45, 16 / 45, 8 / 45), (32 / 45, -16 / 45, 8 / 45), (0, 0, 1))
_AT6 = ((1, 1, 1, 1, 1, 1, 1, 0), (0, 1, -1, 2, -2, 1 / 2, -1 / 2, 0), (0, 1, 1, 4, 4, 1 / 4, 1 / 4, 0),
        (0, 1, -1, 8, -8, 1 / 8, -1 / 8, 0), (0, 1, 1, 16, 16, 1 / 16, 1 / 16, 0),
        (0, 1, -1, 32, -32, 1 / 32, -1 / 32, 1))
#: Output tile side m of F(m×m, 3×3) → its (Bᵀ, G, Aᵀ). A transformed filter holds (m + 2)² points, so its
#: first dimension (36 or 64) tells which form it is for.
TRANSFORMS = {4: (_BT4, _G4, _AT4), 6: (_BT6, _G6, _AT6)}


def _matrix(rows: tuple, like: Tensor) -> Tensor:
    return torch.tensor(rows, dtype=like.dtype, device=like.device)


def winograd_op_available() -> bool:
    """True when ``torch.ops.evss.winograd_conv3x3`` (compiled extension) is loaded."""
    return _C is not None and hasattr(torch.ops.evss, "winograd_conv3x3")


def winograd_weight(weight: Tensor, dtype: torch.dtype = torch.float32, tile: int = 4) -> Tensor:
    """The transformed filter ``U[ξ, c, k] = (G g[k, c] Gᵀ)[ξ]`` of F(tile×tile, 3×3): (tile + 2)²×C×K
    (36 or 64 points) from a K×C×3×3 filter, computed in float64 and rounded once to ``dtype`` (float32,
    or bfloat16 for bfloat16 matrix products)."""
    if weight.dim() != 4 or weight.shape[-2:] != (3, 3):
        raise ValueError(f"winograd_weight: expected a (K, C, 3, 3) filter, got shape {tuple(weight.shape)}")
    if dtype not in (torch.float32, torch.bfloat16):
        raise ValueError(f"winograd_weight: dtype must be float32 or bfloat16, got {dtype}")
    if tile not in TRANSFORMS:
        raise ValueError(f"winograd_weight: tile must be one of {sorted(TRANSFORMS)}, got {tile}")
    w = weight.detach().double()
    g = _matrix(TRANSFORMS[tile][1], w)
    u = torch.einsum("ai,kcij,bj->abck", g, w, g)
    return u.reshape((tile + 2) ** 2, weight.shape[1], weight.shape[0]).to(dtype).contiguous()


def winograd_tile(weight_winograd: Tensor) -> int:
    """The output tile side (4 or 6) a transformed filter is for, from its number of points (36 or 64)."""
    for tile in TRANSFORMS:
        if weight_winograd.shape[0] == (tile + 2) ** 2:
            return tile
    raise ValueError(f"not a transformed filter: {weight_winograd.shape[0]} points (36 or 64 expected)")


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
    t = winograd_tile(weight_winograd)
    n = t + 2
    th, tw = -(-h // t), -(-w // t)
    xf = x.float()
    patches = F.pad(xf, (1, t * tw + 1 - w, 1, t * th + 1 - h)).unfold(2, n, t).unfold(3, n, t)
    bt_rows, _, at_rows = TRANSFORMS[t]
    bt = _matrix(bt_rows, xf)
    v = torch.einsum("ai,bcxyij,dj->adbxyc", bt, patches, bt).reshape(n * n, b * th * tw, c)
    m = torch.bmm(v.to(weight_winograd.dtype), weight_winograd).float().reshape(n, n, b, th, tw, k)
    at = _matrix(at_rows, xf)
    y = torch.einsum("ai,ijbxyk,cj->bkxayc", at, m, at).reshape(b, k, t * th, t * tw)[:, :, :h, :w]
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
    ``max_channel_pairs`` = C·K. The transformed filter of F(4×4, 3×3) holds 36·C·K floats (3×3, 4× the
    filter; 5×5: 144·C·K, 5.8×; F(6×6, 3×3): 64·C·K): ~280 MB for all of EVSS in float32, of which the
    six layers with 384 to 512 channels (on the 1/32 and 1/64 grids) hold 70 % for 10–25 % of the time
    Winograd saves (keyframe, non-keyframe step); ``max_channel_pairs=256 * 256`` leaves them direct."""
    return (type(conv) is nn.Conv2d and (conv.kernel_size, conv.stride, conv.padding) in _FORMS
            and conv.dilation == (1, 1) and conv.groups == 1 and conv.padding_mode == "zeros"
            and min(conv.in_channels, conv.out_channels) >= min_channels
            and (max_channel_pairs is None or conv.in_channels * conv.out_channels <= max_channel_pairs))


#: Channel pairs (C·K, with 4C input channels for a 5×5/2 layer) up to which :func:`default_tile` picks
#: F(6×6, 3×3). Measured at 1024×2048 inputs with 2 threads, F(6×6) against F(4×4): 128→128 at 256×512
#: 66 → 59 ms, 64→64 at 256×512 20 → 17.5 ms, FlowNet's conv2 (4·24 → 48 at 512×1024) 25 → 21 ms; from
#: 192→192 at 64×128 on it gains nothing, and on the wide layers of the small grids (512→512 at 32×64)
#: it is slower (17 → 21 ms: partial 6×6 tiles, and U 1.8× larger).
F6_MAX_CHANNEL_PAIRS = 128 * 128


def default_tile(conv: nn.Conv2d, products: torch.dtype = torch.float32) -> int:
    """The Winograd tile for an eligible layer: 6 (F(6×6, 3×3)) for float32 products on a layer with at
    most :data:`F6_MAX_CHANNEL_PAIRS` channel pairs, else 4 (with bfloat16 products F(6×6, 3×3)'s
    rounding, 6.8 % relative RMS per layer, is twice F(4×4, 3×3)'s)."""
    s = _FORMS[(conv.kernel_size, conv.stride, conv.padding)]
    narrow = s * s * conv.in_channels * conv.out_channels <= F6_MAX_CHANNEL_PAIRS
    return 6 if products == torch.float32 and narrow else 4


class WinogradConv2d(nn.Module):
    """Inference stand-in for an eligible ``nn.Conv2d`` (:func:`is_winograd_eligible`): Winograd on CPU
    when the compiled operator is loaded, ``F.conv2d`` with the original filter otherwise (GPUs, where
    cuDNN picks its own algorithm; other dtypes). Keeps ``weight`` and ``bias`` as they were;
    ``products`` is the matrix products' dtype (float32, or bfloat16: faster, less exact), ``tile`` the
    output tile side of F(tile×tile, 3×3), 4 or 6 (default: :func:`default_tile`)."""

    def __init__(self, conv: nn.Conv2d, products: torch.dtype = torch.float32, tile: int | None = None):
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
        tile = default_tile(conv, products) if tile is None else tile
        self.register_buffer("weight_winograd", winograd_weight(taps, products, tile), persistent=False)

    def extra_repr(self) -> str:
        products = str(self.weight_winograd.dtype).removeprefix("torch.")
        t = winograd_tile(self.weight_winograd)
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, F({t}x{t}, 3x3), space_to_depth={self.space_to_depth}, "
                f"products={products}")

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
        torch._check(x.dim() == 4 and weight_winograd.dim() == 3 and weight_winograd.shape[0] in (36, 64)
                     and weight_winograd.shape[1] == s * s * x.shape[1],
                     lambda: "evss::winograd_conv3x3: input (B, C, H, W) and weight (36 or 64, s*s*C, K) expected")
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
