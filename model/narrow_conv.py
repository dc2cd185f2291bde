"""3×3 convolutions with a few output channels (FlowNet's flow heads, CoNet's edge head) on CPU.

oneDNN's direct kernel runs a 3×3 convolution with two output channels far below the CPU's peak:
there is too little output to vectorise over. The same layer is one matrix product of the NHWC map with the
filter taps side by side, ``Y[p, (ty, tx, k)] = Σ_c x[p, c] · g[k, c, ty, tx]`` (C × 9K, run by oneDNN
near its peak), then nine shifted sums of the thin result,
``y[p, k] = bias[k] + Σ_{ty, tx} Y[p + (ty − 1, tx − 1), (ty, tx, k)]`` (zero past the edge), with
float32 results closer to the float64 convolution than the direct kernel's. A layer whose input is a channel concatenation can take
the pieces instead (one matrix product each, summed): FlowNet's last head reads its three inputs where
they lie instead of a 74-channel copy of them. Only float32 CPU maps take this path: in bfloat16 the
shifted sums of the rounded ``Y`` are slower than oneDNN's bf16 kernel and 4× less exact, and GPUs
have cuDNN, so :class:`NarrowConv2d` calls ``F.conv2d`` there.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["NarrowConv2d", "is_narrow_eligible", "narrow_conv3x3"]

#: Output channels up to which the matrix product path pays (measured with 2; 4 is still thin).
MAX_OUT_CHANNELS = 4


def is_narrow_eligible(conv: nn.Module, min_in_channels: int = 16) -> bool:
    """A plain 3×3 convolution with stride 1, padding 1, no dilation or groups, zero padding, at most
    :data:`MAX_OUT_CHANNELS` output channels and at least ``min_in_channels`` input channels."""
    return (type(conv) is nn.Conv2d and conv.kernel_size == (3, 3) and conv.stride == (1, 1)
            and conv.padding == (1, 1) and conv.dilation == (1, 1) and conv.groups == 1
            and conv.padding_mode == "zeros" and conv.out_channels <= MAX_OUT_CHANNELS
            and conv.in_channels >= min_in_channels)


def narrow_conv3x3(x: Tensor | Sequence[Tensor], taps: Tensor, bias: Tensor | None) -> Tensor:
    """``F.conv2d(x, g, bias, padding=1)`` of a B×C×H×W map as one matrix product and nine shifted sums;
    ``taps`` is ``g.permute(1, 2, 3, 0).reshape(C, 9 * K)``. ``x`` may also be the maps whose channel
    concatenation is the input (``torch.cat(x, 1)`` is never built). Returns B×K×H×W in ``channels_last``."""
    parts = [x] if isinstance(x, Tensor) else list(x)
    b, _, h, w = parts[0].shape
    if sum(p.shape[1] for p in parts) != taps.shape[0] or any(p.shape[2:] != (h, w) for p in parts):
        raise ValueError(f"narrow_conv3x3: inputs {[tuple(p.shape) for p in parts]} do not concatenate to "
                         f"the filter's {taps.shape[0]} channels")
    k = taps.shape[1] // 9
    y, c0 = None, 0
    for part in parts:
        c = part.shape[1]
        rows = part.permute(0, 2, 3, 1).reshape(-1, c)
        # addmm with out=y rather than addmm_, which torch.utils.flop_counter does not count
        y = rows @ taps[c0:c0 + c] if y is None else torch.addmm(y, rows, taps[c0:c0 + c], out=y)
        c0 += c
    y = y.view(b, h, w, 3, 3, k)
    out = y.new_zeros(b, h, w, k) if bias is None else bias.view(1, 1, 1, k).expand(b, h, w, k).contiguous()
    for ty in range(3):
        dy = ty - 1
        for tx in range(3):
            dx = tx - 1
            out[:, max(0, -dy):h - max(0, dy), max(0, -dx):w - max(0, dx)] += \
                y[:, max(0, dy):h + min(0, dy), max(0, dx):w + min(0, dx), ty, tx]
    return out.permute(0, 3, 1, 2)


class NarrowConv2d(nn.Module):
    """Inference stand-in for an eligible ``nn.Conv2d`` (:func:`is_narrow_eligible`): the matrix product
    path for float32 maps on CPU, ``F.conv2d`` with the original filter otherwise. Keeps ``weight``
    and ``bias`` as they were. Its input may be a map or, where ``takes_parts`` is checked
    (:class:`model.flownet.FlowNetS`), the list of maps that concatenate to it."""

    #: ``forward`` accepts the pieces of a channel concatenation.
    takes_parts = True

    def __init__(self, conv: nn.Conv2d):
        super().__init__()
        if not is_narrow_eligible(conv, min_in_channels=1):
            raise ValueError(f"NarrowConv2d: not a 3×3, stride 1, padding 1 convolution with at most "
                             f"{MAX_OUT_CHANNELS} output channels: {conv}")
        self.in_channels, self.out_channels = conv.in_channels, conv.out_channels
        self.weight = conv.weight
        self.bias = conv.bias
        taps = conv.weight.detach().permute(1, 2, 3, 0).reshape(conv.in_channels, 9 * conv.out_channels)
        self.register_buffer("taps", taps.contiguous(), persistent=False)

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, kernel_size=(3, 3), padding=(1, 1), matrix product"

    def forward(self, x: Tensor | Sequence[Tensor]) -> Tensor:
        first = x if isinstance(x, Tensor) else x[0]
        if first.device.type == "cpu" and first.dtype == torch.float32 and self.taps.dtype == torch.float32:
            return narrow_conv3x3(x, self.taps, self.bias)
        return F.conv2d(x if isinstance(x, Tensor) else torch.cat(list(x), 1), self.weight, self.bias, padding=1)
