"""One code path from a single CPU process to many GPUs under ``torchrun``.

``torchrun`` sets ``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT``;
without them the process runs alone. The backend is NCCL when the process has a GPU, gloo on the
CPU. SyncBatchNorm is used only when distributed on CUDA (PyTorch's does not run on CPU tensors).
Logging and saving belong to rank 0 (:func:`is_main`).
"""
from __future__ import annotations

import datetime
import math
import os
from dataclasses import dataclass
from typing import Iterator

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import Dataset, DistributedSampler

from engine.config import ConfigError


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


_INFO = DistInfo()


def init_distributed(device: str = "auto", timeout_s: float = 1800) -> DistInfo:
    """Set up the process group from the environment (a no-op for one process).

    Args:
        device: ``"auto"`` (the local GPU when CUDA is available, else CPU), ``"cpu"`` or ``"cuda"``.
    """
    global _INFO
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() if device == "auto" else device.startswith("cuda")
    if use_cuda and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' requested but CUDA is not available (use device=cpu or auto)")
    if use_cuda:
        if local_rank >= torch.cuda.device_count():
            raise ConfigError(f"LOCAL_RANK {local_rank} but only {torch.cuda.device_count()} GPUs are visible (--gpus too large?)")
        torch.cuda.set_device(local_rank)
        dev = torch.device("cuda", local_rank)
    else:
        dev = torch.device("cpu")
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if use_cuda else "gloo"
        kwargs = {"device_id": dev} if use_cuda else {}
        dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s), **kwargs)
        rank, world_size = dist.get_rank(), dist.get_world_size()
    _INFO = DistInfo(rank, local_rank, world_size, dev)
    return _INFO


def info() -> DistInfo:
    return _INFO


def is_main() -> bool:
    return _INFO.is_main


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        if _INFO.device.type == "cuda":
            dist.barrier(device_ids=[_INFO.device.index])
        else:
            dist.barrier()


def cleanup() -> None:
    global _INFO
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    _INFO = DistInfo()


def all_reduce_mean(values: dict[str, float]) -> dict[str, float]:
    """Average scalars over ranks (identity for one process)."""
    if not _INFO.distributed or not values:
        return values
    keys = sorted(values)
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=_INFO.device)
    dist.all_reduce(t)
    t /= _INFO.world_size
    return dict(zip(keys, t.tolist()))


def any_true(flag: bool) -> bool:
    """True when ``flag`` is True on any rank."""
    if not _INFO.distributed:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=_INFO.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def broadcast_object(obj):
    if not _INFO.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def convert_sync_batchnorm(model: nn.Module, dist_info: DistInfo | None = None) -> nn.Module:
    """SyncBatchNorm only when distributed on CUDA; the model unchanged otherwise."""
    dist_info = dist_info or _INFO
    if dist_info.distributed and dist_info.device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return model


def wrap_ddp(model: nn.Module, dist_info: DistInfo | None = None, find_unused_parameters: bool = False) -> nn.Module:
    """DistributedDataParallel when distributed, the model itself otherwise."""
    dist_info = dist_info or _INFO
    if not dist_info.distributed:
        return model
    device_ids = [dist_info.device.index] if dist_info.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=device_ids,
                                               find_unused_parameters=find_unused_parameters)


def unwrap(model: nn.Module) -> nn.Module:
    """The module under DDP / torch.compile wrappers."""
    while True:
        if isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        else:
            return model


class ResumableDistributedSampler(DistributedSampler):
    """:class:`DistributedSampler` (one replica when not distributed) that can skip the first
    ``start`` indices of this rank's shard, so a run resumed mid-epoch sees exactly the batches
    an uninterrupted run would. Call :meth:`set_epoch` every epoch (reshuffles, resets the skip)."""

    def __init__(self, dataset: Dataset, dist_info: DistInfo | None = None, shuffle: bool = True,
                 seed: int = 0, drop_last: bool = True):
        dist_info = dist_info or _INFO
        super().__init__(dataset, num_replicas=dist_info.world_size, rank=dist_info.rank, shuffle=shuffle,
                         seed=seed, drop_last=drop_last)
        self.start = 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        super().set_epoch(epoch)
        self.start = start

    def __iter__(self) -> Iterator[int]:
        indices = list(super().__iter__())
        return iter(indices[self.start:])

    def __len__(self) -> int:
        return max(0, self.num_samples - self.start)


def shard_len(num_samples: int, dist_info: DistInfo | None = None, drop_last: bool = True) -> int:
    dist_info = dist_info or _INFO
    if drop_last:
        return num_samples // dist_info.world_size
    return math.ceil(num_samples / dist_info.world_size)
