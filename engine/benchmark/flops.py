"""FLOPs per stage: ``torch.utils.flop_counter.FlopCounterMode`` counts convolutions and matrix products
(2 FLOPs per multiply-add; elementwise work, warps and resizes count 0). Winograd layers are counted
as the direct convolutions they replace, so achieved rates of such layers can pass the conv peak."""
from __future__ import annotations

import torch
from torch import Tensor
from torch.utils.flop_counter import FlopCounterMode

from .stages import StageRunner

__all__ = ["count_gflops"]


def count_gflops(runner: StageRunner, frames: list[Tensor]) -> dict[str, float]:
    """GFLOPs of each of ``runner.flop_stages`` on ``frames`` (one call each)."""
    fns = runner.stage_functions(frames)
    res = {}
    with torch.no_grad():
        for stage in runner.flop_stages:
            counter = FlopCounterMode(display=False)
            with counter:
                fns[stage]()
            res[stage] = counter.get_total_flops() / 1e9
    return res
