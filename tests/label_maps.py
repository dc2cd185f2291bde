"""Hand-made class maps and flows shared by the label-warp and temporal-consistency tests."""
from __future__ import annotations

import torch


def t(rows) -> torch.Tensor:
    """A class map (int64) from nested lists."""
    return torch.tensor(rows, dtype=torch.int64)


def const_flow(n: int, h: int, w: int, dx: float, dy: float = 0.0) -> torch.Tensor:
    """n×2×h×w flow that is (dx, dy) everywhere."""
    f = torch.zeros(n, 2, h, w)
    f[:, 0] = dx
    f[:, 1] = dy
    return f
