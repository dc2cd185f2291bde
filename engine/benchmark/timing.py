"""Timing of zero-argument stage functions (interleaved repeats, paired ratios), the conv peak, and
data loading on its own.

Every timed call ends with ``torch.cuda.synchronize`` on CUDA. The stages and runners take turns
inside each repeat (:func:`time_stages`), so a load change on the machine hits them alike and the
two calls of a repeat form one side-by-side pair (:func:`paired_ratio_range`).
"""
from __future__ import annotations

import resource
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image

from .inputs import make_frames

__all__ = ["PEAK_LAYER", "time_stages", "timed_ms", "paired_ratio_range", "spread", "measure_conv_peaks",
           "time_data_loading"]

#: The reference layer of the conv peak: a 128→128 3×3 convolution of a 256×512 map, batch 1,
#: ``channels_last``, run by the backend's direct convolution (oneDNN on CPU, cuDNN on CUDA).
PEAK_LAYER = {"channels": 128, "size": (256, 512)}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_ms(fn: Callable[[], object], device: torch.device) -> float:
    """Milliseconds of one call of ``fn``, synchronised before and after on CUDA."""
    _sync(device)
    t0 = time.perf_counter()
    fn()
    _sync(device)
    return (time.perf_counter() - t0) * 1e3


def _minor_faults() -> int:
    """Minor page faults of this process so far."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def time_stages(fns_by_runner: dict[str, dict[str, Callable[[], object]]], repeats: int, warmup: int,
                device: torch.device) -> tuple[dict, dict]:
    """Interleaved timings: in each of ``warmup + repeats`` rounds every runner runs every stage once,
    stage by stage in turn (the first ``warmup`` rounds are not recorded).

    Returns the milliseconds and the minor page faults of each timed call, both as
    ``{runner: {stage: [one value per repeat]}}``.
    """
    times = {name: {stage: [] for stage in fns} for name, fns in fns_by_runner.items()}
    faults = {name: {stage: [] for stage in fns} for name, fns in fns_by_runner.items()}
    stages = list(dict.fromkeys(stage for fns in fns_by_runner.values() for stage in fns))
    with torch.no_grad():
        for i in range(warmup + repeats):
            for stage in stages:
                for name, fns in fns_by_runner.items():
                    if stage in fns:
                        before = _minor_faults()
                        t = timed_ms(fns[stage], device)
                        if i >= warmup:
                            times[name][stage].append(t)
                            faults[name][stage].append(_minor_faults() - before)
    return times, faults


def spread(values: list[float]) -> dict:
    """Median, min, max, spread (``(max - min) / median`` in %) and the rounded runs of some timings."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "spread_pct": 100 * (max(values) - min(values)) / statistics.median(values) if values else 0,
            "runs": [round(v, 2) for v in values]}


def paired_ratio_range(a: list[float], b: list[float]) -> list[float]:
    """``[min, max]`` of ``a[i] / b[i]`` over the repeats: the two calls of repeat ``i`` ran back to back
    (:func:`time_stages`), so each quotient is one side-by-side measurement. The ratio of the medians
    always lies in this range; how wide it is tells how much a single pair could have said."""
    ratios = [x / y for x, y in zip(a, b, strict=True)]
    return [min(ratios), max(ratios)]


def measure_conv_peaks(device: torch.device, repeats: int) -> dict[str, float]:
    """GFLOP/s of :data:`PEAK_LAYER` in float32 and bfloat16 (medians of ``repeats`` calls after one
    warm-up), keyed ``"float32"`` / ``"bfloat16"``: the practical peak each variant's achieved rate is
    set against, measured in the same run."""
    c, (h, w) = PEAK_LAYER["channels"], PEAK_LAYER["size"]
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, c, h, w, generator=gen).to(device).contiguous(memory_format=torch.channels_last)
    weight = (torch.randn(c, c, 3, 3, generator=gen) / (3 * c ** 0.5)).to(device)
    gflop = 2 * h * w * c * c * 9 / 1e9
    peaks = {}
    with torch.no_grad():
        for dtype in (torch.float32, torch.bfloat16):
            xd, wd = x.to(dtype), weight.to(dtype).contiguous(memory_format=torch.channels_last)
            times = [timed_ms(lambda: torch.nn.functional.conv2d(xd, wd, padding=1), device)
                     for _ in range(repeats + 1)][1:]
            peaks[str(dtype).removeprefix("torch.")] = gflop / (statistics.median(times) / 1e3)
    return peaks


def time_data_loading(h: int, w: int, repeats: int) -> dict:
    """Decoding an H×W PNG frame (PIL, then to a float tensor), as the data sets do: ``png_decode_ms``
    (median of ``repeats`` after one warm-up), ``png_bytes`` and ``decoder``. Kept out of the model
    timings."""
    frame = make_frames(1, h, w, torch.device("cpu"), n=1)[0][0]
    img = (frame.permute(1, 2, 0).numpy() * 255).astype(np.uint8)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "frame.png"
        Image.fromarray(img).save(path)
        times = []
        for _ in range(repeats + 1):
            t0 = time.perf_counter()
            arr = np.asarray(Image.open(path).convert("RGB"))
            torch.from_numpy(arr.copy()).permute(2, 0, 1).float().div_(255)
            times.append((time.perf_counter() - t0) * 1e3)
        size = path.stat().st_size
    return {"png_decode_ms": statistics.median(times[1:]), "png_bytes": size, "decoder": "PIL"}
