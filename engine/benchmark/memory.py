"""Peak memory of streaming inference, each measured in a fresh worker process.

``peak_mem_mb`` is the peak RSS of a process that streams a keyframe and a non-keyframe twice with one
runner at one resolution (on CUDA ``torch.cuda.max_memory_allocated``); ``base_mem_mb`` the same
process once the model and inputs are loaded (torch's libraries alone hold a large RSS on CPU), where
the peak counter is restarted, so their difference is what inference itself needs. The worker runs with glibc's
mmap threshold fixed at 128 kB, so every large tensor is returned when freed: the live memory, the
same in every run (glibc's dynamic threshold would keep freed tensors of earlier frames in the heap,
and the peak would vary between identical runs).

The worker is this module run as a program (``python -m engine.benchmark.memory``); it prints one JSON
line with both numbers.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from torch import nn

from .inputs import make_frames
from .stages import DAVSSRunner, EVSSRunner, StageRunner
from .variants import load_davss, load_evss

__all__ = ["measure_peak_memory", "current_memory_mb", "peak_rss_mb"]

ROOT = Path(__file__).resolve().parents[2]


def _proc_status_mb(field: str) -> float | None:
    """A memory field of /proc/self/status in MB (None where that file is not available)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def current_memory_mb(device: torch.device) -> float:
    """Memory in use now (CUDA: allocated; CPU: RSS), with the peak counter restarted here where the
    OS allows it, so that a later peak is that of what follows alone."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return torch.cuda.memory_allocated(device) / 2**20
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
    except OSError:
        pass
    return _proc_status_mb("VmRSS") or 0.0


def peak_rss_mb() -> float:
    """This process's peak RSS: VmHWM of /proc/self/status (the current address space only; getrusage's
    ru_maxrss would also count the parent's resident pages at fork time), else ru_maxrss."""
    peak = _proc_status_mb("VmHWM")
    return peak if peak is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure_peak_memory(runner: str, net: nn.Module, resolution: tuple[int, int], *, batch: int, threads: int,
                        device: str, keyframe: str = "csrnet") -> dict | None:
    """``peak_mem_mb`` and ``base_mem_mb`` of a fresh worker streaming with ``runner`` (``davss`` or an
    EVSS variant name) built from ``net``'s weights (handed over as a file, so the worker's memory is
    the model's own) at ``resolution`` (H, W). None, with the worker's error on stderr, if it failed."""
    tmp = tempfile.NamedTemporaryFile(suffix=".pt", delete=False)
    tmp.close()
    try:
        torch.save({k: v.cpu() for k, v in net.state_dict().items()}, tmp.name)
        cmd = [sys.executable, "-m", "engine.benchmark.memory", "--runner", runner, "--keyframe", keyframe,
               "--resolution", f"{resolution[0]}x{resolution[1]}", "--threads", str(threads), "--batch", str(batch),
               "--weights", tmp.name, "--num-classes", str(net.num_classes), "--device", device]
        env = {"MALLOC_MMAP_THRESHOLD_": "131072", **os.environ}
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env)
    finally:
        os.unlink(tmp.name)
    if proc.returncode != 0:
        print(f"[benchmark] peak-memory run of {runner} at {resolution} failed:\n{proc.stderr[-2000:]}", file=sys.stderr)
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _worker(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="peak-memory worker of engine.benchmark (one runner, one resolution)")
    p.add_argument("--runner", required=True, help="davss or an EVSS variant")
    p.add_argument("--keyframe", default="csrnet", help="DAVSS's keyframe network")
    p.add_argument("--resolution", required=True, help="HxW")
    p.add_argument("--threads", type=int, required=True)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--weights", required=True, help="state-dict file")
    p.add_argument("--num-classes", type=int, required=True)
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    h, w = (int(v) for v in args.resolution.split("x"))
    runner: StageRunner
    if args.runner == "davss":
        runner = DAVSSRunner(load_davss(args.num_classes, args.keyframe, args.weights, device))
    else:  # optimised in place: no second copy of the weights
        net = load_evss(args.num_classes, args.weights, device)
        runner = EVSSRunner(args.runner, net, inplace=True)
    frames = make_frames(args.batch, h, w, device)
    base = current_memory_mb(device)
    for _ in range(2):
        runner.stream.step(frames[0], keyframe=True)
        runner.stream.step(frames[1])
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else peak_rss_mb()
    print(json.dumps({"peak_mem_mb": peak, "base_mem_mb": base}))


if __name__ == "__main__":
    _worker()
