"""The device parametrisation of the tests that run the same logic on the CPU and on CUDA
(tests/*/test_device_*.py), and the helpers they and the multi-process tests share.

``DEVICES`` gives such a test a ``cpu`` leg, which runs everywhere (so CI runs it every time), and a
``cuda`` leg carrying the ``cuda`` marker: tests/conftest.py skips it, with a reason, where no CUDA
device is present, and ``pytest -m cuda`` selects the CUDA tier.  A test with no CPU counterpart takes
``@pytest.mark.cuda`` itself.
"""
from __future__ import annotations

import socket
from contextlib import contextmanager
from typing import Iterator

import pytest
import torch
from torch import Tensor

CUDA = pytest.param("cuda", marks=pytest.mark.cuda, id="cuda")
DEVICES = [pytest.param("cpu", id="cpu"), CUDA]


def ulp(x: Tensor, dtype: torch.dtype) -> Tensor:
    """The spacing of ``dtype``'s numbers at ``|x|`` (float64, elementwise; the smallest normal's
    spacing below it): one unit in the last place of a ``dtype`` value of that size."""
    info = torch.finfo(dtype)
    mag = x.double().abs().clamp(min=info.tiny)
    return info.eps * torch.exp2(torch.floor(torch.log2(mag)))


@contextmanager
def full_fp32() -> Iterator[None]:
    """CUDA matrix products and convolutions in full float32 (no TF32) inside the block, so a CUDA
    result can be held to a CPU tolerance; the previous settings come back afterwards."""
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (for a rendezvous or process-group store)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
