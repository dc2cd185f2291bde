"""What every streaming measure shares: summing its state over processes, JSON-ready floats."""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.distributed as dist
from torch import Tensor


def all_reduce_sum(t: Tensor, group: Optional[dist.ProcessGroup] = None) -> Tensor:
    """Sum ``t`` over all processes of ``group`` when ``torch.distributed`` is initialised.

    Returns a new tensor on ``t``'s device (``t`` itself when there is no process group). With
    the NCCL backend a CPU tensor travels through the current CUDA device.
    """
    if not (dist.is_available() and dist.is_initialized()):
        return t
    work = t.detach().clone()
    if dist.get_backend(group) == "nccl" and work.device.type != "cuda":
        work = work.cuda(torch.cuda.current_device())
    dist.all_reduce(work, op=dist.ReduceOp.SUM, group=group)
    return work.to(t.device)


def nan_to_none(v: Optional[float]) -> Optional[float]:
    """``None`` for a missing or NaN value (JSON has no NaN), ``float(v)`` otherwise."""
    return None if (v is None or math.isnan(v)) else float(v)
