"""run/gpu_check.sh and tools/gpu_check.py where no GPU is present (the dry run itself, every step on the
CPU, takes minutes: `bash run/gpu_check.sh --dry-run`)."""
from __future__ import annotations

import subprocess

import pytest
import torch

from tools import gpu_check

no_gpu = pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present")


@no_gpu
def test_without_a_gpu_the_check_stops_with_one_error_line():
    proc = subprocess.run(["bash", "run/gpu_check.sh", "--out", "unused.json"], cwd=gpu_check.ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: no GPU found") and proc.stderr.count("\n") == 1, proc.stderr
    assert "--dry-run" in proc.stderr


@no_gpu
def test_the_tool_refuses_a_cuda_run_without_a_gpu(tmp_path):
    with pytest.raises(gpu_check.ConfigError, match="no CUDA device is present"):
        gpu_check.main(["--work", str(tmp_path)])
    assert not any(tmp_path.iterdir())


def test_probe_runs_the_compiled_warp_against_the_fallback():
    found = gpu_check.main(["--probe", "cpu"])
    assert found["ok"] and found["max_diff"] == 0.0 and found["backend"].startswith("compiled")
