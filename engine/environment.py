"""What a result was produced with: versions, devices, threads, the warp backend, the git revision."""
from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

import torch

from model.warp import warp_backend
from model.winograd import winograd_op_available

ROOT = Path(__file__).resolve().parents[1]


def git_revision() -> str:
    """``git describe``-style revision of the checkout (``+dirty`` when modified), or ``unknown``."""
    try:
        rev = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=ROOT, capture_output=True,
                             text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (rev + ("+dirty" if dirty else "")) if rev else "unknown"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def collect_env() -> dict:
    """A JSON-ready report of the software and hardware a run uses."""
    report = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(),
        "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "thp_mem_alloc": os.environ.get("THP_MEM_ALLOC_ENABLE", "0") not in ("", "0"),
        "warp_backend": warp_backend(),
        "winograd_op": winograd_op_available(),
        "git_revision": git_revision(),
    }
    for name in ("torchvision", "numpy", "cv2"):
        try:
            report[name] = __import__(name).__version__
        except ImportError:
            report[name] = None
    return report
