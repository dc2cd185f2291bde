"""One benchmark run: every runner at every resolution, timed interleaved, with FLOPs, memory and the
comparisons, as the JSON that ``tools/benchmark.py --json`` writes.

Per runner and resolution (milliseconds, medians over the repeats): ``<stage>_ms`` for every stage of
:mod:`engine.benchmark.stages`, ``spread`` (per stage: median, min, max, spread %, the runs),
``faults`` (per stage, the median minor page faults per call: a stage whose tensors come from fresh
pages rather than the reused heap pays for them in proportion to their size, which tells such a cost
from other swings between runs), ``amortised_k<k>_ms`` = ``(key_step + (k-1)·nonkey)/k``, ``gflops`` and
``gflop_per_s`` per counted stage and ``pct_of_conv_peak`` (of the conv peak in the runner's
precision), ``peak_mem_mb``, ``base_mem_mb`` and ``inference_mem_mb`` (:mod:`engine.benchmark.memory`).

Two EVSS variants (``compare``) or two methods (``compare_methods``, over the stages both have) add
``ratios`` (first over second, of the medians), ``ratio_ranges`` (the range of the per-repeat ratios
of back-to-back calls) and ``amortised_ratios``; two variants also their ``difference``
(:func:`engine.benchmark.accuracy.output_difference`) and memory ratios.
"""
from __future__ import annotations

import os
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from engine.environment import collect_env

from .accuracy import output_difference
from .flops import count_gflops
from .inputs import make_frames
from .memory import measure_peak_memory
from .stages import DAVSSRunner, EVSSRunner, StageRunner
from .timing import measure_conv_peaks, paired_ratio_range, spread, time_data_loading, time_stages
from .variants import BenchmarkError, build_lraspp, check_weights, load_davss, load_evss

__all__ = ["STAGES", "SHARED_STAGES", "VARIANT_STAGES", "BenchmarkSettings", "build_runners", "run_resolution",
           "run_benchmark"]

#: Stages in table order; each runner times those it has.
STAGES = ("key", "key_step", "flownet", "warp", "conet", "fusion", "downsample", "dmnet", "cfnet", "merge", "nonkey")
#: Stages of both methods, compared by ``--method davss,evss``.
SHARED_STAGES = ("key", "key_step", "flownet", "warp", "nonkey")
#: Stages compared between two EVSS variants.
VARIANT_STAGES = ("key", "key_step", "flownet", "warp", "conet", "fusion", "nonkey")
#: The per-frame baselines of ``baseline="lraspp"``: name → bf16.
LRASPP_RUNS = {"lraspp_fp32": False, "lraspp_bf16": True}


@dataclass
class BenchmarkSettings:
    """What one run measures (the options of ``tools/benchmark.py``)."""

    resolutions: list[tuple[int, int]]                            # (H, W) each
    variants: list[str] = field(default_factory=lambda: ["exact"])  # EVSS variants
    methods: list[str] = field(default_factory=lambda: ["evss"])    # in runner order
    keyframe: str = "csrnet"                                        # DAVSS's keyframe network
    weights: str = "random"                                         # EVSS (DAVSS: random unless a file)
    make_weights: Path | None = None                                # the reference weight generator
    reference_timing: Path | None = None                            # recorded in the results
    baseline: str | None = None                                     # "lraspp": per-frame baseline too
    batch: int = 1
    repeats: int = 5
    warmup: int = 1
    threads: int = 1                                                # for the memory workers
    ks: list[int] = field(default_factory=lambda: [1, 5, 10])       # keyframe intervals, amortised cost
    device: str = "cpu"
    num_classes: int = 19
    memory: bool = True
    flops: bool = True


def build_runners(settings: BenchmarkSettings, device: torch.device) -> dict[str, StageRunner]:
    """Runners in ``methods`` order (EVSS: one per variant, sharing one network's weights)."""
    runners: dict[str, StageRunner] = {}
    for method in settings.methods:
        if method == "davss":
            runners["davss"] = DAVSSRunner(load_davss(settings.num_classes, settings.keyframe, settings.weights, device))
        else:
            net = load_evss(settings.num_classes, settings.weights, device, settings.make_weights)
            for name in settings.variants:
                runners[name] = EVSSRunner(name, net)
    return runners


def _timings(times: dict[str, list[float]], faults: dict[str, list[int]]) -> dict:
    """Per stage the median ms, the ``spread`` and the median page ``faults`` of one runner's calls."""
    entry = {f"{stage}_ms": statistics.median(v) for stage, v in times.items() if v}
    entry["spread"] = {stage: spread(v) for stage, v in times.items() if v}
    entry["faults"] = {stage: statistics.median(v) for stage, v in faults.items() if v}
    return entry


def _measures(runner: StageRunner, entry: dict, frames: list, settings: BenchmarkSettings, conv_peaks: dict | None,
              resolution: tuple[int, int]) -> dict:
    """A runner's amortised costs, FLOP rates and peak memory, from its timings ``entry``."""
    out = {f"amortised_k{k}_ms": (entry["key_step_ms"] + (k - 1) * entry["nonkey_ms"]) / k for k in settings.ks}
    if settings.flops:
        gf = count_gflops(runner, frames)
        out["gflops"] = gf
        out["gflop_per_s"] = {stage: gf[stage] / (entry[f"{stage}_ms"] / 1e3) for stage in gf
                              if entry.get(f"{stage}_ms")}
        if conv_peaks:
            peak = conv_peaks[str(runner.dtype).removeprefix("torch.")]
            out["pct_of_conv_peak"] = {stage: 100 * rate / peak for stage, rate in out["gflop_per_s"].items()}
    if settings.memory:
        mem = measure_peak_memory(runner.name, runner.net, resolution, batch=settings.batch, threads=settings.threads,
                                  device=settings.device, keyframe=settings.keyframe) or {"peak_mem_mb": None}
        out.update(mem)
        if mem["peak_mem_mb"] is not None:
            out["inference_mem_mb"] = mem["peak_mem_mb"] - mem["base_mem_mb"]
    return out


def _ratios(a: dict, b: dict, times_a: dict, times_b: dict, stages: tuple[str, ...], ks: list[int]) -> dict:
    return {"ratios": {stage: a[f"{stage}_ms"] / b[f"{stage}_ms"] for stage in stages},
            "ratio_ranges": {stage: paired_ratio_range(times_a[stage], times_b[stage]) for stage in stages},
            "amortised_ratios": {f"k{k}": a[f"amortised_k{k}_ms"] / b[f"amortised_k{k}_ms"] for k in ks}}


def run_resolution(resolution: tuple[int, int], settings: BenchmarkSettings, device: torch.device,
                   conv_peaks: dict | None = None) -> dict:
    """Every runner (and baseline) at ``resolution`` (H, W), timed interleaved: one entry per runner,
    ``lraspp_fp32`` / ``lraspp_bf16`` (``key_step_ms`` per frame) with the baseline, and ``compare`` or
    ``compare_methods``."""
    runners = build_runners(settings, device)
    frames = make_frames(settings.batch, *resolution, device)
    fns = {name: r.stage_functions(frames) for name, r in runners.items()}
    if settings.baseline == "lraspp":
        for name, bf16 in LRASPP_RUNS.items():
            run = build_lraspp(settings.num_classes, device, bf16)
            fns[name] = {"key_step": (lambda run=run: run(frames[0]))}
    times, faults = time_stages(fns, settings.repeats, settings.warmup, device)
    result = {}
    for name in fns:
        result[name] = _timings(times[name], faults[name])
        if name in runners:
            result[name].update(_measures(runners[name], result[name], frames, settings, conv_peaks, resolution))
    if len(settings.methods) == 2:
        first, second = runners
        result["compare_methods"] = {"runners": list(runners), **_ratios(
            result[first], result[second], times[first], times[second], SHARED_STAGES, settings.ks)}
    elif len(settings.variants) == 2:
        a, b = settings.variants
        ra, rb = result[a], result[b]
        result["compare"] = {**_ratios(ra, rb, times[a], times[b], VARIANT_STAGES, settings.ks),
                             "difference": output_difference(runners[a], runners[b], frames)}
        if ra.get("peak_mem_mb") and rb.get("peak_mem_mb"):
            result["compare"]["peak_mem_ratio"] = ra["peak_mem_mb"] / rb["peak_mem_mb"]
            result["compare"]["inference_mem_ratio"] = ra["inference_mem_mb"] / rb["inference_mem_mb"]
    return result


def run_benchmark(settings: BenchmarkSettings, malloc: str = "glibc default",
                  progress: Callable[[str], None] | None = print) -> dict:
    """The whole run: header (environment, settings, the conv peaks), then per resolution
    ``resolutions[HxW]`` (:func:`run_resolution`), ``data_loading[HxW]`` and the flat keys ``HxW`` (the
    first runner's entry without ``spread``, plus ``lraspp_*_ms`` with the baseline). ``malloc`` is the
    allocator policy in effect (:func:`engine.malloc.retain_freed_memory`), recorded as it is.
    :class:`engine.benchmark.variants.BenchmarkError` for weights or files that are not there."""
    if "evss" in settings.methods:
        check_weights(settings.weights, settings.make_weights)
    if settings.reference_timing is not None and not Path(settings.reference_timing).is_file():
        raise BenchmarkError(f"--reference-timing {settings.reference_timing}: no such file")
    device = torch.device(settings.device)
    results = {"environment": collect_env(), "malloc": malloc, "threads": torch.get_num_threads(),
               "batch": settings.batch, "device": settings.device, "repeats": settings.repeats,
               "warmup": settings.warmup, "variants": list(settings.variants), "weights": settings.weights,
               "resolutions": {}, "data_loading": {}}
    conv_peaks = measure_conv_peaks(device, max(3, settings.repeats)) if settings.flops else None
    if conv_peaks:
        results["conv_peak_gflop_per_s"] = conv_peaks
    if "davss" in settings.methods:
        results.update(methods=list(settings.methods), davss_keyframe=settings.keyframe,
                       davss_weights=settings.weights if os.path.isfile(settings.weights) else "random")
    names = [name for m in settings.methods for name in (["davss"] if m == "davss" else settings.variants)]
    if settings.reference_timing is not None:
        results["reference"] = str(settings.reference_timing)
    for res in settings.resolutions:
        key = f"{res[0]}x{res[1]}"
        if progress:
            progress(f"[benchmark] {key}: {', '.join(names)}" + (f" + {settings.baseline}" if settings.baseline else ""))
        entries = results["resolutions"][key] = run_resolution(res, settings, device, conv_peaks)
        results["data_loading"][key] = time_data_loading(res[0], res[1], max(1, settings.repeats))
        flat = results[key] = {k: v for k, v in entries[names[0]].items() if k != "spread"}
        if settings.baseline == "lraspp":
            for name in LRASPP_RUNS:
                flat[f"{name}_ms"] = entries[name]["key_step_ms"]
            flat["amortised_k10_vs_lraspp_fp32"] = (flat["amortised_k10_ms"] / flat["lraspp_fp32_ms"]
                                                    if 10 in settings.ks else None)
    return results
