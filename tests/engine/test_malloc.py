"""engine.malloc: freed large tensors are reused instead of page-faulted in again."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine.malloc import retain_freed_memory

ROOT = Path(__file__).resolve().parents[2]

# Minor page faults of the third keyframe of the exact network at 1024×1024, whose 128-channel maps on
# the 1/4 grid (33.5 MB) lie above glibc's largest dynamic mmap threshold (32 MiB).
_PROBE = """
import json, resource, sys, torch
from engine.malloc import retain_freed_memory
policy = retain_freed_memory() if sys.argv[1] == "retain" else "default"
from model import build_evss
from model.inference import optimize_for_inference
torch.set_num_threads(1)
net = optimize_for_inference(build_evss(19).eval())
frame = net.prepare(torch.rand(1, 3, 1024, 1024))
for _ in range(3):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    net.keyframe(frame)
print(json.dumps({"policy": policy, "faults": resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before}))
"""


def _probe(mode: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    out = subprocess.run([sys.executable, "-c", _PROBE, mode], cwd=ROOT, env=env, capture_output=True, text=True,
                         check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc thresholds")
def test_retained_memory_is_not_faulted_in_again():
    default, retained = _probe("default"), _probe("retain")
    if not retained["policy"].startswith("glibc:"):
        pytest.skip(f"not glibc: {retained['policy']}")
    map_pages = 33554432 // os.sysconf("SC_PAGE_SIZE")
    assert default["faults"] >= 4 * map_pages  # every large map of every frame is faulted in again
    assert retained["faults"] <= default["faults"] / 4


def test_user_environment_wins(monkeypatch):
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "12345")
    assert retain_freed_memory() == "environment: MALLOC_TRIM_THRESHOLD_=12345"
