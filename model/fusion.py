"""Distortion maps and the merge of warped and corrected logits (EVSS's rectification).

Shapes: ``*_q`` tensors live on the 1/4 grid (B×·×h×w); the full-resolution grid is 4h×4w, which is
the input size when H and W divide by 4 (otherwise callers crop with ``crop``).
"""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from .blocks import upsample4


class Fusion(NamedTuple):
    """Full-resolution products of one rectification step."""

    dm_fine: Tensor      # B×1×4h×4w distortion map in [0, 1]
    logits: Tensor       # B×C×4h×4w merged logits
    warped_up: Tensor    # B×C×4h×4w warped logits ×4
    update_up: Tensor    # B×C×4h×4w CoNet logits ×4
    edge_up: Tensor      # B×2×4h×4w edge logits ×4


def class_index(logits: Tensor) -> Tensor:
    """B×1×h×w int64 index of each pixel's largest logit (B×C×h×w), as ``argmax(1, keepdim=True)``.

    Same result, ties (first maximum) and NaN (counts as largest) included; ``Tensor.max``'s indices
    are faster than ``argmax`` on a CPU NCHW map.
    """
    return logits.max(1, keepdim=True).indices


def coarse_distortion(key_pred_q: Tensor, warped_q: Tensor) -> Tensor:
    """B×1×h×w float map: 1 where the keyframe's class differs from the warped logits' argmax."""
    return (key_pred_q != class_index(warped_q)).to(warped_q.dtype)


def crop(x: Tensor, size: tuple[int, int] | None) -> Tensor:
    """Crop the bottom/right of a full-resolution map to ``size`` (no-op when None)."""
    return x if size is None else x[..., :size[0], :size[1]]


def fuse(warped_q: Tensor, update_q: Tensor, edge_q: Tensor, dm_coarse_q: Tensor, wf: float,
         size: tuple[int, int] | None = None) -> Fusion:
    """Fine distortion map and merged logits, in the original's order of operations.

    ``dm_fine = (1 − wf)·softmax(edge↑4)[edge] + wf·dm_coarse↑4`` and
    ``logits = warped↑4·(1 − dm_fine) + update↑4·dm_fine`` (↑4: bilinear, align_corners=False).
    ``size`` crops every full-resolution map (training on sizes not divisible by 4).
    """
    edge_up = crop(upsample4(edge_q), size)
    warped_up = crop(upsample4(warped_q), size)
    update_up = crop(upsample4(update_q), size)
    dm_fine = (1 - wf) * torch.softmax(edge_up, 1)[:, 1:2] + wf * crop(upsample4(dm_coarse_q), size)
    logits = warped_up * (1 - dm_fine) + update_up * dm_fine
    return Fusion(dm_fine, logits, warped_up, update_up, edge_up)


# ------------------------------------------------------------------------------------------------
# Prediction-only merge: the argmax of the merged logits without full-resolution maps.

try:  # loads the operator library into torch.ops.evss (also done by model.warp)
    from . import _C  # type: ignore[attr-defined]
except (ImportError, OSError):  # not built, or built against another torch
    _C = None

#: Output rows per tile of the pure-PyTorch fallback (a multiple of 4; bounds its memory to
#: about ``(2C + 4) * tile * W`` floats).
FALLBACK_TILE_ROWS = 64


def fused_op_available() -> bool:
    """True when ``torch.ops.evss.fused_merge_argmax`` (compiled extension) is loaded."""
    return _C is not None and hasattr(torch.ops.evss, "fused_merge_argmax")


def _full_size(x: Tensor, size: tuple[int, int] | None) -> tuple[int, int]:
    h, w = x.shape[-2:]
    if size is None:
        return 4 * h, 4 * w
    out_h, out_w = int(size[0]), int(size[1])
    if not (0 <= out_h <= 4 * h and 0 <= out_w <= 4 * w):
        raise ValueError(f"size {size} exceeds the full-resolution grid {4 * h}x{4 * w}")
    return out_h, out_w


def _tile_rows(h: int, out_h: int, tile: int):
    """(lo, hi, skip, rows) per tile: 1/4-grid rows lo..hi (one halo row each side where the map
    continues), then output rows skip..skip+rows of the ×4 upsampled slice are output rows
    4a..4a+rows.  The halo makes every tile's upsampling identical to the whole map's."""
    step = max(1, tile // 4)
    for a in range(0, h, step):
        b = min(a + step, h)
        rows = min(4 * b, out_h) - 4 * a
        if rows <= 0:
            break
        lo, hi = max(a - 1, 0), min(b + 1, h)
        yield lo, hi, 4 * (a - lo), rows, 4 * a


def merge_argmax_pytorch(warped_q: Tensor, update_q: Tensor, edge_q: Tensor, dm_coarse_q: Tensor, wf: float,
                         size: tuple[int, int] | None = None, tile_rows: int = FALLBACK_TILE_ROWS) -> Tensor:
    """Pure-PyTorch :func:`merge_argmax`: :func:`fuse` on horizontal bands of ``tile_rows`` output
    rows (with a one-row halo on the 1/4 grid), so its results are those of ``fuse`` bit for bit
    while only one band of full-resolution maps exists at a time."""
    out_h, out_w = _full_size(warped_q, size)
    h = warped_q.shape[-2]
    out = torch.empty((warped_q.shape[0], out_h, out_w), dtype=torch.int64, device=warped_q.device)
    for lo, hi, skip, rows, dst in _tile_rows(h, out_h, tile_rows):
        band = fuse(warped_q[:, :, lo:hi], update_q[:, :, lo:hi], edge_q[:, :, lo:hi], dm_coarse_q[:, :, lo:hi], wf)
        out[:, dst:dst + rows] = band.logits[:, :, skip:skip + rows, :out_w].argmax(1)
    return out


def upsample_argmax_pytorch(logits_q: Tensor, size: tuple[int, int] | None = None,
                            tile_rows: int = FALLBACK_TILE_ROWS) -> Tensor:
    """Pure-PyTorch :func:`upsample_argmax` (banded, bit-identical to ``crop(upsample4(x), size).argmax(1)``)."""
    out_h, out_w = _full_size(logits_q, size)
    h = logits_q.shape[-2]
    out = torch.empty((logits_q.shape[0], out_h, out_w), dtype=torch.int64, device=logits_q.device)
    for lo, hi, skip, rows, dst in _tile_rows(h, out_h, tile_rows):
        out[:, dst:dst + rows] = upsample4(logits_q[:, :, lo:hi])[:, :, skip:skip + rows, :out_w].argmax(1)
    return out


def _use_op(backend: str | None) -> bool:
    choice = (backend or "auto").lower()
    if choice == "auto":
        return fused_op_available()
    if choice in ("compiled", "op"):
        if not fused_op_available():
            raise RuntimeError("the compiled evss::fused_merge_argmax is not available; build the extension "
                               "with `pip install --no-build-isolation -e .`")
        return True
    if choice in ("pytorch", "fallback"):
        return False
    raise ValueError(f"unknown backend {backend!r} (use 'auto', 'compiled' or 'pytorch')")


def merge_argmax(warped_q: Tensor, update_q: Tensor, edge_q: Tensor, dm_coarse_q: Tensor, wf: float,
                 size: tuple[int, int] | None = None, backend: str | None = None) -> Tensor:
    """``fuse(warped_q, update_q, edge_q, dm_coarse_q, wf, size).logits.argmax(1)`` (B×H×W int64)
    without materialising the full-resolution maps.

    Uses the fused operator ``torch.ops.evss.fused_merge_argmax`` (CPU/CUDA) when the extension is
    built, else the banded :func:`merge_argmax_pytorch`; ``backend``: ``"auto"`` (default),
    ``"compiled"`` or ``"pytorch"``. Same arithmetic to float rounding: the prediction is identical
    except where the two best merged logits are within float rounding of each other.
    """
    out_h, out_w = _full_size(warped_q, size)
    if _use_op(backend):
        return torch.ops.evss.fused_merge_argmax(warped_q, update_q, edge_q, dm_coarse_q, float(wf), out_h, out_w)
    dt = torch.promote_types(warped_q.dtype, torch.float32)
    return merge_argmax_pytorch(warped_q.to(dt), update_q.to(dt), edge_q.to(dt), dm_coarse_q.to(dt), wf,
                                (out_h, out_w))


def upsample_argmax(logits_q: Tensor, size: tuple[int, int] | None = None, backend: str | None = None) -> Tensor:
    """``crop(upsample4(logits_q), size).argmax(1)`` without the full-resolution logits
    (``torch.ops.evss.upsample_argmax`` or the banded fallback)."""
    out_h, out_w = _full_size(logits_q, size)
    if _use_op(backend):
        return torch.ops.evss.upsample_argmax(logits_q, out_h, out_w)
    return upsample_argmax_pytorch(logits_q.to(torch.promote_types(logits_q.dtype, torch.float32)), (out_h, out_w))


def _register_fake_kernels() -> None:
    if not fused_op_available() or getattr(_C, "_evss_fusion_fakes", False):
        return

    @torch.library.register_fake("evss::fused_merge_argmax")
    def _fused_merge_argmax_fake(warped_q, update_q, edge_q, dm_coarse_q, wf, out_h, out_w):
        torch._check(warped_q.dim() == 4 and update_q.shape == warped_q.shape,
                     lambda: "evss::fused_merge_argmax: warped_q and update_q must be (B, C, h, w)")
        torch._check(edge_q.dim() == 4 and edge_q.shape[1] == 2 and dm_coarse_q.dim() == 4 and dm_coarse_q.shape[1] == 1,
                     lambda: "evss::fused_merge_argmax: edge_q (B, 2, h, w) and dm_coarse_q (B, 1, h, w) expected")
        return warped_q.new_empty((warped_q.shape[0], out_h, out_w), dtype=torch.int64)

    @torch.library.register_fake("evss::upsample_argmax")
    def _upsample_argmax_fake(logits_q, out_h, out_w):
        torch._check(logits_q.dim() == 4, lambda: "evss::upsample_argmax: logits_q must be (B, C, h, w)")
        return logits_q.new_empty((logits_q.shape[0], out_h, out_w), dtype=torch.int64)

    _C._evss_fusion_fakes = True


_register_fake_kernels()
