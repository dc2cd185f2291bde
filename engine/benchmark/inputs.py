"""The benchmark's inputs: smooth synthetic frames with a small motion between them."""
from __future__ import annotations

import torch

__all__ = ["make_frames"]


def make_frames(batch: int, h: int, w: int, device: torch.device, n: int = 2, seed: int = 0) -> list[torch.Tensor]:
    """``n`` smooth random RGB frames B×3×H×W in [0, 1], each the previous one shifted by (3, 5) pixels
    (a small motion, as between consecutive video frames)."""
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(batch, 3, h // 16 + 2, w // 16 + 2, generator=g)
    base = torch.nn.functional.interpolate(base, size=(h + 8 * n, w + 8 * n), mode="bilinear", align_corners=False)
    base = (base + 0.05 * torch.rand(base.shape, generator=g)).clamp(0, 1)
    return [base[:, :, 3 * i:3 * i + h, 5 * i:5 * i + w].contiguous().to(device) for i in range(n)]
