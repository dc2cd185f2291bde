"""The GPU path checked in one run (run/gpu_check.sh): build, the CUDA tests, the benchmark, AMP training.

    python -m tools.gpu_check [--dry-run] [--work DIR] [--out FILE.json]

Every step is timed and its result recorded in one JSON; a failed step does not stop the next, and the
command ends with one ``error:`` line (exit status 1) when any failed. Each step's output goes to
``WORK/logs/<step>.log``.

build      the loaded extension's kernels must run on the GPU (a warp against the PyTorch fallback),
           else it is rebuilt in place for the GPU's compute capability (TORCH_CUDA_ARCH_LIST).
           Dry run: a CPU-only build into a temporary folder (the tree's extension is left as it is),
           then the same probe on the CPU.
tests      ``pytest -m cuda``, the CUDA tier (where no GPU is present every test in it skips); dry run:
           also the CPU legs of the device tests (tests/*/test_device_*.py).
benchmark  tools.benchmark --compare original exact, then --compare exact fast (bf16), at 512x1024 and
           1024x2048: medians of synchronised timings, peak memory (torch.cuda.max_memory_allocated in a
           fresh process). Dry run: at 64x128 on the CPU.
train      run/train_citys.sh, every stage, on a synthetic tree in the Cityscapes layout written first:
           100 iterations a stage at 128x256 with bf16 autocast. Dry run: 2 iterations at 32x64 in fp32.

Sized to finish within 8 minutes on one H100 (three repeats, small crops, no FLOP counting).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch

from engine.atomic import atomic_write_json
from engine.config import ConfigError
from model.errors import UserError, run_cli

ROOT = Path(__file__).resolve().parents[1]
STEP_TIMEOUT_S = 600
STAGES = ("csrnet", "flownet", "evss")
#: What the JSON keeps of each benchmark entry (milliseconds, MB; the full results are beside it).
BENCHMARK_KEYS = ("key_step_ms", "nonkey_ms", "amortised_k5_ms", "peak_mem_mb", "inference_mem_mb")


@dataclass(frozen=True)
class Plan:
    """What a run measures: the GPU check, or the dry run's tiny version of it on the CPU."""

    device: str
    resolutions: str     # benchmark, comma-separated HxW
    repeats: int         # benchmark repeats after ``warmup`` rounds
    warmup: int
    iters: int           # training iterations per stage
    size: tuple[int, int]  # synthetic frames and training crop (H, W)
    clips: int           # synthetic clips per split
    batch: int
    amp: str
    workers: int


GPU = Plan("cuda", "512x1024,1024x2048", 3, 2, 100, (128, 256), 4, 4, "bf16", 4)
DRY_RUN = Plan("cpu", "64x128", 1, 1, 2, (32, 64), 2, 2, "none", 0)


def _run(cmd: list[str], log: Path, **env: str) -> int:
    """``cmd`` in the repository root with ``env`` added, its output appended to ``log``; the exit status."""
    with open(log, "a") as out:
        out.write(f"$ {' '.join(cmd)}\n")
        out.flush()
        return subprocess.run(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **env},
                              timeout=STEP_TIMEOUT_S).returncode


def probe(device: str) -> dict:
    """Run the compiled warp on ``device`` against the PyTorch fallback (float32, forward)."""
    from model.warp import cuda_kernels_compiled, warp, warp_backend, warp_pytorch

    gen = torch.Generator().manual_seed(0)
    x, flow = torch.randn(2, 4, 16, 24, generator=gen), 3 * torch.randn(2, 2, 16, 24, generator=gen)
    diff = (warp(x.to(device), flow.to(device), backend="compiled").cpu() - warp_pytorch(x, flow)).abs().max().item()
    return {"device": device, "backend": warp_backend(), "cuda_kernels": cuda_kernels_compiled(), "max_diff": diff,
            "ok": diff <= 1e-5}


def _probe_in_subprocess(device: str, log: Path) -> dict:
    """:func:`probe` in a fresh process, which loads the extension as it is on disk now."""
    proc = subprocess.run([sys.executable, "-m", "tools.gpu_check", "--probe", device], cwd=ROOT, capture_output=True,
                          text=True, timeout=STEP_TIMEOUT_S)
    with open(log, "a") as out:
        out.write(proc.stdout + proc.stderr)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        return {"ok": False, "error": proc.stderr.strip()[-300:]}
    return json.loads(lines[-1])


def step_build(plan: Plan, work: Path, log: Path) -> dict:
    """GPU: keep the extension if its kernels run here, else rebuild it; dry run: a CPU build aside."""
    if plan.device == "cpu":
        with tempfile.TemporaryDirectory() as tmp:
            status = _run([sys.executable, "setup.py", "-q", "build_ext", "--build-lib", tmp, "--build-temp", tmp],
                          log, FORCE_CUDA="0")
        found = _probe_in_subprocess("cpu", log)
        return {"ok": status == 0 and found["ok"], "action": "CPU kernels built into a temporary folder",
                "probe": found}
    arch = os.environ.get("TORCH_CUDA_ARCH_LIST") or "{}.{}".format(*torch.cuda.get_device_capability())
    found, action = _probe_in_subprocess("cuda", log), "kept: its kernels run on this GPU"
    if not found["ok"]:
        _run([sys.executable, "-m", "pip", "install", "-q", "--no-build-isolation", "--no-deps", "-e", "."], log,
             TORCH_CUDA_ARCH_LIST=arch, FORCE_CUDA="1")
        found, action = _probe_in_subprocess("cuda", log), f"rebuilt in place for TORCH_CUDA_ARCH_LIST={arch}"
    return {"ok": found["ok"], "arch": arch, "action": action, "probe": found}


def _pytest(args: list[str], xml: Path, log: Path) -> dict:
    status = _run([sys.executable, "-m", "pytest", "-q", "--junitxml", str(xml), *args], log)
    suite = ET.parse(xml).getroot().find("testsuite")
    counts = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    counts["passed"] = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    return {"ok": status == 0, "status": status, **counts}


def step_tests(plan: Plan, work: Path, log: Path) -> dict:
    """The CUDA tier (and, in the dry run, the device tests' CPU legs) with their counts."""
    runs = {"cuda_tier": _pytest(["-m", "cuda"], work / "pytest_cuda.xml", log)}
    if plan.device == "cpu":
        tier = runs["cuda_tier"]
        tier["ok"] = tier["ok"] and tier["skipped"] == tier["tests"] > 0  # skips cleanly: no GPU here
        legs = sorted(str(p.relative_to(ROOT)) for p in ROOT.glob("tests/*/test_device_*.py"))
        runs["cpu_legs"] = _pytest(["-m", "not cuda", *legs], work / "pytest_cpu_legs.xml", log)
    return {"ok": all(r["ok"] for r in runs.values()), **runs}


def step_benchmark(plan: Plan, work: Path, log: Path) -> dict:
    """Original against exact, exact against fast: per resolution and variant the BENCHMARK_KEYS."""
    out: dict = {"ok": True, "resolutions": {}}
    for a, b in (("original", "exact"), ("exact", "fast")):
        path = work / f"benchmark_{a}_{b}.json"
        status = _run([sys.executable, "-m", "tools.benchmark", "--device", plan.device, "--resolutions",
                       plan.resolutions, "--compare", a, b, "--repeats", str(plan.repeats), "--warmup",
                       str(plan.warmup), "--no-flops", "--json", str(path)], log)
        if status != 0:
            out.update(ok=False, failed=f"{a} vs {b}")
            continue
        for res, entries in json.loads(path.read_text())["resolutions"].items():
            row = out["resolutions"].setdefault(res, {"variants": {}, "amortised_ratios": {}})
            for variant in (a, b):  # exact: the first comparison's, interleaved with original
                row["variants"].setdefault(variant, {k: entries[variant].get(k) for k in BENCHMARK_KEYS})
            row["amortised_ratios"][f"{a}/{b}"] = entries["compare"]["amortised_ratios"]
    return out


def _stage_record(run_dir: Path) -> dict:
    """Iterations, wall time and the logged losses of one stage's run folder (its log.txt)."""
    text = (run_dir / "log.txt").read_text()
    losses = [float(v) for v in re.findall(r"\] iteration \d+/\d+ (?:.* )?loss=(\S+)", text)]
    done = re.findall(r"\] done: (\{.*\})", text)
    if not (done and losses):
        return {"finished": False}
    summary = json.loads(done[-1])
    iters, wall = summary["iteration"], summary["train_wall_s"]
    return {"finished": True, "iterations": iters, "wall_s": wall, "it_per_s": iters / wall if wall else None,
            "first_loss": losses[0], "last_loss": losses[-1], "finite": all(map(math.isfinite, losses))}


def step_train(plan: Plan, work: Path, log: Path) -> dict:
    """run/train_citys.sh (all stages, one process) on a fresh synthetic tree; per stage _stage_record."""
    data, runs = work / "cityscapes", work / "train"
    for folder in (data, runs):  # a fresh run: an old one would resume as already complete
        shutil.rmtree(folder, ignore_errors=True)
    h, w = plan.size
    if _run([sys.executable, "-m", "dataset.synthetic", "--out", str(data), "--layout", "cityscapes", "--num-clips",
             str(plan.clips), "--frames", "30", "--height", str(h), "--width", str(w)], log) != 0:
        return {"ok": False, "failed": "writing the synthetic Cityscapes tree"}
    status = _run(["bash", "run/train_citys.sh", "--gpus", "1", "--nnodes", "1", "--node-rank", "0", "--data-root",
                   str(data), "--out", str(runs), f"device={plan.device}", f"train.amp={plan.amp}",
                   f"train.iters={plan.iters}", f"train.batch_size={plan.batch}", f"train.workers={plan.workers}",
                   f"data.crop=[{h},{w}]", f"train.log_every={max(1, plan.iters // 10)}", "train.progress=false",
                   "train.eval_first=false", "train.eval_every=0", "train.ckpt_every=0", "train.tb_images=0",
                   "data.val_limit=2", "csrnet:model.pretrained_backbone=false"], log)
    stages = {s: _stage_record(runs / s) for s in STAGES if (runs / s / "log.txt").is_file()}
    ok = status == 0 and len(stages) == len(STAGES) and all(
        r["finished"] and r["finite"] and r["iterations"] == plan.iters for r in stages.values())
    return {"ok": ok, "amp": plan.amp, "size": list(plan.size), "stages": stages}


STEPS: dict[str, Callable[[Plan, Path, Path], dict]] = {
    "build": step_build, "tests": step_tests, "benchmark": step_benchmark, "train": step_train}


def _describe(name: str, r: dict) -> str:
    """One line of the summary table for step ``name``'s result ``r``."""
    if "error" in r or "failed" in r:
        return r.get("error") or f"failed: {r['failed']}"
    if name == "build":
        found = r["probe"]
        return f"{r['action']}; warp {found.get('backend')}, max |diff| {found.get('max_diff', float('nan')):.1e}"
    if name == "tests":
        return "; ".join(f"{k}: {v['passed']} passed, {v['skipped']} skipped, {v['failures'] + v['errors']} failed"
                         for k, v in r.items() if isinstance(v, dict))
    if name == "train":
        return f"{r['amp']} at {r['size'][0]}x{r['size'][1]}: " + "; ".join(
            f"{s} {v['iterations']} it, {v['it_per_s'] or 0:.1f} it/s, loss {v['first_loss']:.3f}->{v['last_loss']:.3f}"
            if v["finished"] else f"{s} did not finish" for s, v in r["stages"].items())
    return ", ".join(r["resolutions"]) + " (below)"


def print_summary(report: dict) -> None:
    """The steps, then the benchmark's milliseconds and memory, as tables."""
    print(f"\nGPU check ({report['mode']}, {report['device']}) in {report['seconds']:.0f} s -> {report['json']}")
    print(f"{'step':<10} {'ok':<4} {'seconds':>8}  result")
    for name, r in report["steps"].items():
        print(f"{name:<10} {'yes' if r['ok'] else 'NO':<4} {r['seconds']:>8.1f}  {_describe(name, r)}")
    resolutions = report["steps"]["benchmark"].get("resolutions", {})
    if resolutions:
        print(f"\n{'resolution':<11} {'variant':<9} {'key ms':>8} {'non-key ms':>10} {'k=5 ms':>8} {'peak MB':>9}")
    for res, row in resolutions.items():
        for variant, e in row["variants"].items():
            mem = "-" if e["peak_mem_mb"] is None else f"{e['peak_mem_mb']:.0f}"
            print(f"{res:<11} {variant:<9} {e['key_step_ms']:>8.1f} {e['nonkey_ms']:>10.1f} "
                  f"{e['amortised_k5_ms']:>8.1f} {mem:>9}")


def run(dry_run: bool, work: Path, out: Path) -> dict:
    """Every step of the plan, the JSON written to ``out`` and the summary printed."""
    if not dry_run and not torch.cuda.is_available():
        raise ConfigError("no CUDA device is present (bash run/gpu_check.sh --dry-run runs every step on the CPU)")
    plan = DRY_RUN if dry_run else GPU
    (work / "logs").mkdir(parents=True, exist_ok=True)
    report = {"mode": "dry run on the CPU" if dry_run else "CUDA", "plan": asdict(plan), "json": str(out),
              "device": torch.cuda.get_device_name() if not dry_run else "cpu", "steps": {}}
    start = time.perf_counter()
    for name, fn in STEPS.items():
        print(f"[gpu_check] {name} ...", flush=True)
        t0 = time.perf_counter()
        try:
            result = fn(plan, work, work / "logs" / f"{name}.log")
        except (OSError, ValueError, KeyError, IndexError, ET.ParseError, subprocess.TimeoutExpired) as err:
            result = {"ok": False, "error": f"{type(err).__name__}: {err}"}
        report["steps"][name] = {**result, "seconds": round(time.perf_counter() - t0, 1)}
    report["seconds"] = round(time.perf_counter() - start, 1)
    atomic_write_json(report, out)
    print_summary(report)
    failed = [name for name, r in report["steps"].items() if not r["ok"]]
    if failed:
        raise UserError(f"gpu check: {', '.join(failed)} failed; their output is in {work / 'logs'}")
    return report


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dry-run", action="store_true", help="every step on the CPU at tiny sizes (no GPU needed)")
    p.add_argument("--work", type=Path, default=ROOT / "runs" / "gpu_check", help="logs, data and runs go here")
    p.add_argument("--out", type=Path, default=None, help="the JSON (default WORK/gpu_check.json)")
    p.add_argument("--probe", metavar="DEVICE", help="only run the compiled warp on DEVICE and print one JSON line")
    args = p.parse_args(argv)
    if args.probe:
        found = probe(args.probe)
        print(json.dumps(found))
        if not found["ok"]:
            raise UserError(f"the compiled warp on {args.probe} differs from the fallback by {found['max_diff']:.3g}")
        return found
    return run(args.dry_run, args.work.resolve(), (args.out or args.work / "gpu_check.json").resolve())


if __name__ == "__main__":
    run_cli(main)
