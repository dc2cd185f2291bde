"""EVSS / DAVSS speed benchmark: keyframe, the parts of a non-keyframe step, amortised cost, memory, FLOPs.

    python -m tools.benchmark                                   # exact optimised path, 512x1024 and 1024x2048
    python -m tools.benchmark --variant original --resolutions 1024x2048 --json out.json
    python -m tools.benchmark --compare original exact          # interleaved, ratio + output difference
    python -m tools.benchmark --baseline lraspp                 # + torchvision LRASPP per frame, same run
    python -m tools.benchmark --fast-accuracy                   # fast mode's mIoU change (synthetic val)
    python -m tools.benchmark --method davss --keyframe deeplabv3plus   # DAVSS as released
    python -m tools.benchmark --method davss,evss --variant original    # interleaved, DAVSS/EVSS ratios

Variants (``--variant``, ``--compare A B``):

``original``
    the reference path in the original's order of computation: the plain ``EVSS`` (NCHW, BatchNorm
    unfolded) and ``EVSSStream.step``, i.e. full-resolution fusion (four ×4 upsamplings, softmax,
    blend) then the argmax.
``exact``
    :func:`model.inference.optimize_for_inference`: BatchNorm folded, ``channels_last``, the fused
    merge-argmax operator, Winograd F(4×4, 3×3) and F(6×6, 3×3) for the 3×3 and 5×5/2 convolutions on
    CPU; fp32, same numbers to float rounding. ``exact-direct`` is the same with oneDNN's direct convolutions
    (``winograd=False``).
``fast``
    the fast mode, ``optimize_for_inference(net, fast=True)``: ``exact`` with bf16 weights and
    activations and bf16 Winograd matrix products (measured accuracy change, ``--fast-accuracy``).
    ``fast-fp32-products`` keeps the Winograd products in fp32 (the fast mode before 6 Dec: slower, closer
    to exact).
``NAME@s``
    any of the optimised variants above with ``nonkey_scale=s`` (0 < s < 1: FlowNet and CoNet see the
    non-keyframes resized by s, about s² of their FLOPs, a larger accuracy cost), e.g. ``fast@0.75``.

Timings (milliseconds, medians over ``--repeats`` runs after ``--warmup`` runs; on CUDA every timed
call ends with ``torch.cuda.synchronize``): ``key_ms`` (CSRNet to its 1/4-grid logits, as the
reference timing), ``key_step_ms`` (plus the full-resolution prediction), ``flownet_ms``, ``warp_ms``,
``conet_ms``, ``fusion_ms`` (coarse map, merge and argmax up to the full-resolution prediction),
``nonkey_ms`` (the whole non-keyframe step: flow, warp, CoNet, fusion), and the amortised per-frame
cost ``(key_step + (k-1)·nonkey)/k``. The stages take turns inside each repeat, so load changes on the
machine hit them alike. A comparison (``--compare``, ``--method davss,evss``) gives per stage the ratio of
the medians (``ratios``) and the range of the per-repeat ratios of the two back-to-back calls
(``ratio_ranges``, printed in brackets). ``--malloc retain`` (the default) lets glibc keep freed large
tensors for the next frame (:func:`engine.malloc.retain_freed_memory`; every variant of the run shares
the process, so ratios stay fair); ``--malloc default`` keeps glibc's thresholds, where each large tensor
of each frame is page-faulted in again. Each timed call's minor page faults are counted too (``faults``: per stage,
the median per call; printed below the table): a stage whose tensors come from fresh pages rather than
the reused heap pays ~0.3 ms per MB, so they tell such a cost from other swings between runs (the
original's bandwidth-bound full-resolution fusion took 280–450 ms in runs without a single fault).

DAVSS (``--method davss``; ``--keyframe csrnet``, EVSS's keyframe network, or ``deeplabv3plus``, the
released one) runs its plain ``net.stream()`` path (it has no optimised variant), with random weights
unless ``--weights`` names a state-dict file. Its stages: ``key``, ``key_step`` (plus the 1/4 keyframe
image and the full-resolution prediction), ``flownet``, ``warp`` (one warp of the carried logits and
1/4 image), ``downsample`` (the current frame to the 1/4 grid), ``dmnet``, ``cfnet``, ``merge`` (the
×4 upsamplings, blend and argmax), ``nonkey`` and the amortised cost. ``--method davss,evss`` times both
networks interleaved in one process and adds ``compare_methods``: the first's times over the second's
for the stages they share (with ``--variant original`` the EVSS step is its plain ``net.stream()``
path too).

``peak_mem_mb`` is the peak RSS of a fresh process that streams a keyframe and a non-keyframe twice
with that variant at that resolution (on CUDA ``torch.cuda.max_memory_allocated``), with glibc
returning every large tensor when it is freed (the live memory, whatever ``--malloc`` says; with
``retain`` the resident memory stays at the heap's high-water mark, see the README); ``base_mem_mb`` is
the same process once the model and inputs are loaded (torch alone holds ~0.6 GB of RSS on CPU) and
``inference_mem_mb`` their difference, the memory inference itself needs (the peak counter is restarted
at the base). GFLOPs per module come from ``torch.utils.flop_counter.FlopCounterMode`` (convolutions
and matrix products, 2 FLOPs per multiply-add); achieved GFLOP/s = GFLOPs / median time, also given as a
percentage of the conv peak, the rate of a 128→128 3×3 convolution at 256×512 in the variant's precision
measured at the start of the run (``conv_peak_gflop_per_s``; FLOPs are those of the direct convolutions,
so layers that multiply less, Winograd's, can pass 100 %). Data loading
(decoding a PNG of the resolution) is timed on its own and never inside the model timings.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from engine.atomic import atomic_write_json  # noqa: E402
from engine.environment import collect_env  # noqa: E402
from engine.malloc import retain_freed_memory  # noqa: E402
from model import build_davss, build_evss, load_checkpoint  # noqa: E402
from model.davss import KEYFRAME_NETWORKS  # noqa: E402
from model.fusion import class_index, coarse_distortion, crop, fuse, merge_argmax  # noqa: E402
from model.inference import optimize_for_inference  # noqa: E402
from model.warp import warp  # noqa: E402

#: The optimised variants: their ``optimize_for_inference`` arguments (``original`` is the plain net).
VARIANT_OPTIONS = {
    "exact": {},
    "exact-direct": {"winograd": False},
    "fast": {"fast": True},
    "fast-fp32-products": {"fast": True, "winograd_products": torch.float32},
}
VARIANTS = ("original", *VARIANT_OPTIONS)
METHODS = ("evss", "davss")
#: Stages in table order; each runner times those it has.
STAGES = ("key", "key_step", "flownet", "warp", "conet", "fusion", "downsample", "dmnet", "cfnet", "merge", "nonkey")
#: Stages of both methods, compared by ``--method davss,evss``.
SHARED_STAGES = ("key", "key_step", "flownet", "warp", "nonkey")
MAKE_WEIGHTS = Path(os.environ.get("EVSS_MAKE_WEIGHTS", ROOT.parent / "shared" / "reference" / "make_weights.py"))
REFERENCE_TIMING = ROOT.parent / "shared" / "reference" / "original_cpu_timing.json"

# ------------------------------------------------------------------------------------------------
# set-up


def parse_resolution(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"resolution must be HxW, got {text!r}") from None
    if h <= 0 or w <= 0:
        raise argparse.ArgumentTypeError(f"resolution must be positive, got {text!r}")
    return h, w


def variant_options(name: str) -> dict:
    """``optimize_for_inference`` arguments of an optimised variant: a key of :data:`VARIANT_OPTIONS`,
    optionally with ``@s`` for ``nonkey_scale=s`` (``fast@0.75``). Raises ``ValueError`` otherwise."""
    base, at, scale = name.partition("@")
    if base not in VARIANT_OPTIONS:
        raise ValueError(f"unknown variant {name!r}: one of {VARIANTS}, or an optimised one with @SCALE "
                         "(e.g. fast@0.75)")
    if not at:
        return dict(VARIANT_OPTIONS[base])
    try:
        value = float(scale)
    except ValueError:
        value = float("nan")
    if not 0 < value < 1:
        raise ValueError(f"variant {name!r}: the scale after @ must be a number in (0, 1), got {scale!r}")
    return {**VARIANT_OPTIONS[base], "nonkey_scale": value}


def parse_variant(text: str) -> str:
    """An EVSS variant name for argparse: ``original`` or an optimised one (:func:`variant_options`)."""
    if text != "original":
        try:
            variant_options(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
    return text


def parse_methods(text: str) -> list[str]:
    methods = text.split(",")
    if any(m not in METHODS for m in methods) or len(set(methods)) != len(methods):
        raise argparse.ArgumentTypeError(f"methods must be distinct, from {METHODS}, comma-separated; got {text!r}")
    return methods


def load_net(num_classes: int, weights: str, device: torch.device):
    """The EVSS net in eval mode: a checkpoint file (any layout ``load_checkpoint`` reads; the
    peak-memory workers get the parent's state dict), make_weights.py's deterministic checkpoint
    (``weights``: citys / camvid) when available, else random initialisation."""
    net = build_evss(num_classes).eval()
    if os.path.isfile(weights):
        load_checkpoint(net, weights)
    elif weights != "random" and MAKE_WEIGHTS.is_file():
        spec = importlib.util.spec_from_file_location("make_weights", MAKE_WEIGHTS)
        mw = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mw)
        load_checkpoint(net, mw.make_state_dict(weights, 0))
    return net.to(device)


def load_davss(num_classes: int, keyframe: str, weights: str, device: torch.device):
    """DAVSS in eval mode: the state dict ``weights`` when it is a file, else random initialisation."""
    net = build_davss(num_classes, keyframe=keyframe).eval()
    if os.path.isfile(weights):
        load_checkpoint(net, weights)
    return net.to(device)


def make_frames(batch: int, h: int, w: int, device: torch.device, n: int = 2, seed: int = 0) -> list[torch.Tensor]:
    """Smooth random RGB frames in [0, 1]; each the previous one shifted by a few pixels."""
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(batch, 3, h // 16 + 2, w // 16 + 2, generator=g)
    base = torch.nn.functional.interpolate(base, size=(h + 8 * n, w + 8 * n), mode="bilinear", align_corners=False)
    base = (base + 0.05 * torch.rand(base.shape, generator=g)).clamp(0, 1)
    return [base[:, :, 3 * i:3 * i + h, 5 * i:5 * i + w].contiguous().to(device) for i in range(n)]


class Runner:
    """One variant's stage functions, with the state a non-keyframe step needs."""

    flop_stages = ("key", "flownet", "conet", "nonkey")

    def __init__(self, name: str, net, device: torch.device, inplace: bool = False):
        self.name = name
        self.device = device
        if name == "original":
            self.model = net
            self.prepare = lambda f: f
            self.conet = net.conet
            self.keyframe = net.keyframe
            self.flow = net.flow
            self.stream = net.stream()
        else:
            self.model = optimize_for_inference(net, inplace=inplace, **variant_options(name))
            self.prepare = self.model.prepare
            self.conet = self.model.conet
            self.keyframe = self.model.keyframe
            self.flow = self.model.flow
            self.stream = self.model.stream()
        self.wf = net.wf
        self.dtype = next(self.model.parameters()).dtype  # the precision its convolutions run in

    def fusion(self, frame, warped, update, edge, key_pred):
        size = tuple(frame.shape[-2:])
        dm_coarse = coarse_distortion(key_pred, warped)
        if self.name == "original":
            fused = fuse(warped, update, edge, dm_coarse, self.wf)
            return crop(fused.logits, size).argmax(1)
        return merge_argmax(warped, update, edge, dm_coarse, self.wf, size)

    def set_state(self, key_logits, key_pred, previous):
        """Put the stream right after a keyframe (so every timed non-keyframe step is alike); the
        keyframe's class map ``key_pred`` belongs to the keyframe step, as in the stream."""
        self.stream.features = key_logits
        self.stream.key_pred = key_pred
        self.stream.previous = previous

    def stage_functions(self, frames: list[torch.Tensor]) -> dict:
        """Per stage, a zero-argument function running it on fixed inputs (computed once here)."""
        f0, f1 = (self.prepare(f) for f in frames[:2])
        with torch.no_grad():
            key = self.keyframe(f0)
            key_pred = class_index(key)
            flow = self.flow(f1, f0)
            warped = warp(key, flow)
            edge, update = self.conet(f1, warped)

        def key_step():
            self.stream.previous = self.stream.features = None
            return self.stream.step(frames[0], keyframe=True)

        def nonkey():
            self.set_state(key, key_pred, f0 if self.name != "original" else frames[0])
            return self.stream.step(frames[1])

        with torch.no_grad():
            return {
                "key": lambda: self.keyframe(f0),
                "key_step": key_step,
                "flownet": lambda: self.flow(f1, f0),
                "warp": lambda: warp(key, flow),
                "conet": lambda: self.conet(f1, warped),
                "fusion": lambda: self.fusion(f1, warped, update, edge, key_pred),
                "nonkey": nonkey,
            }


class DAVSSRunner:
    """DAVSS's stage functions: the plain ``net.stream()`` path (DAVSS has no optimised variant)."""

    flop_stages = ("key", "flownet", "dmnet", "cfnet", "nonkey")

    def __init__(self, net):
        self.net = net
        self.stream = net.stream()
        self.dtype = next(net.parameters()).dtype

    def stage_functions(self, frames: list[torch.Tensor]) -> dict:
        """Per stage, a zero-argument function running it on fixed inputs (computed once here)."""
        net, (f0, f1) = self.net, frames[:2]
        size = tuple(f1.shape[-2:])
        with torch.no_grad():
            carried = net.carry(f0, net.keyframe(f0))
            flow = net.flow(f1, f0)
            warped = warp(carried, flow)
            warped_q, warped_image_q = net.carried_logits(warped), warped[:, net.num_classes:]
            current_q = net.downsample(f1)
            dm_q = net.dmnet(warped_image_q, current_q)
            cfnet_q = net.cfnet(f1)

        def key_step():
            self.stream.previous = self.stream.features = None
            return self.stream.step(f0, keyframe=True)

        def nonkey():
            self.stream.features, self.stream.previous = carried, f0
            return self.stream.step(f1)

        return {
            "key": lambda: net.keyframe(f0),
            "key_step": key_step,
            "flownet": lambda: net.flow(f1, f0),
            "warp": lambda: warp(carried, flow),
            "downsample": lambda: net.downsample(f1),
            "dmnet": lambda: net.dmnet(warped_image_q, current_q),
            "cfnet": lambda: net.cfnet(f1),
            "merge": lambda: net.merge(warped_q, cfnet_q, dm_q, size).logits.argmax(1),
            "nonkey": nonkey,
        }


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn: Callable, device: torch.device) -> float:
    _sync(device)
    t0 = time.perf_counter()
    fn()
    _sync(device)
    return (time.perf_counter() - t0) * 1e3


def _minor_faults() -> int:
    """Minor page faults of this process so far."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def _stats(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "spread_pct": 100 * (max(values) - min(values)) / statistics.median(values) if values else 0,
            "runs": [round(v, 2) for v in values]}


def paired_ratio_range(a: list[float], b: list[float]) -> list[float]:
    """``[min, max]`` of ``a[i] / b[i]`` over the repeats: the two calls of repeat ``i`` ran back to back
    (:func:`time_stages`), so each quotient is one side-by-side measurement. The ratio of the medians
    always lies in this range; how wide it is tells how much a single pair could have said."""
    ratios = [x / y for x, y in zip(a, b, strict=True)]
    return [min(ratios), max(ratios)]


def time_stages(fns_by_runner: dict, repeats: int, warmup: int, device: torch.device) -> tuple[dict, dict]:
    """Interleaved timings: in each repeat every runner runs every stage once, in turn. Returns the
    milliseconds and the minor page faults of each timed call, as ``{runner: {stage: [per call]}}``."""
    times = {name: {stage: [] for stage in fns} for name, fns in fns_by_runner.items()}
    faults = {name: {stage: [] for stage in fns} for name, fns in fns_by_runner.items()}
    stages = list(dict.fromkeys(stage for fns in fns_by_runner.values() for stage in fns))
    with torch.no_grad():
        for i in range(warmup + repeats):
            for stage in stages:
                for name, fns in fns_by_runner.items():
                    if stage in fns:
                        before = _minor_faults()
                        t = _timed(fns[stage], device)
                        if i >= warmup:
                            times[name][stage].append(t)
                            faults[name][stage].append(_minor_faults() - before)
    return times, faults


#: The reference layer of the peak rates (issue 11's): a 128→128 3×3 convolution of a 256×512 map, batch 1,
#: ``channels_last``, run by the backend's direct convolution (oneDNN on CPU, cuDNN on CUDA).
PEAK_LAYER = {"channels": 128, "size": (256, 512)}


def measure_conv_peaks(device: torch.device, repeats: int) -> dict:
    """GFLOP/s of :data:`PEAK_LAYER` in float32 and bfloat16 (medians of ``repeats`` calls after one
    warm-up): the practical peak each variant's achieved rate is set against, measured in the same run
    (issue 11's reference CPU, with AMX: 295 and 1370; a Zen 4 with AVX512-BF16 and no AMX: ~200 and ~450)."""
    c, (h, w) = PEAK_LAYER["channels"], PEAK_LAYER["size"]
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, c, h, w, generator=gen).to(device).contiguous(memory_format=torch.channels_last)
    weight = (torch.randn(c, c, 3, 3, generator=gen) / (3 * c ** 0.5)).to(device)
    gflop = 2 * h * w * c * c * 9 / 1e9
    peaks = {}
    with torch.no_grad():
        for dtype in (torch.float32, torch.bfloat16):
            xd, wd = x.to(dtype), weight.to(dtype).contiguous(memory_format=torch.channels_last)
            times = [_timed(lambda: torch.nn.functional.conv2d(xd, wd, padding=1), device)
                     for _ in range(repeats + 1)][1:]
            peaks[str(dtype).removeprefix("torch.")] = gflop / (statistics.median(times) / 1e3)
    return peaks


def count_gflops(r: Runner | DAVSSRunner, frames: list[torch.Tensor]) -> dict:
    from torch.utils.flop_counter import FlopCounterMode

    fns = r.stage_functions(frames)
    res = {}
    with torch.no_grad():
        for stage in r.flop_stages:
            counter = FlopCounterMode(display=False)
            with counter:
                fns[stage]()
            res[stage] = counter.get_total_flops() / 1e9
    return res


# ------------------------------------------------------------------------------------------------
# peak memory, in a fresh process per (variant, resolution)


def peak_memory_worker(args) -> None:
    device = torch.device(args.device)
    torch.set_num_threads(args.threads)
    h, w = args.resolutions[0]
    if args.variant == "lraspp":
        model, prep = build_lraspp(args.num_classes, device, bf16=False)
        frame = make_frames(args.batch, h, w, device, n=1)[0]
    else:
        if args.method == ["davss"]:
            r = DAVSSRunner(load_davss(args.num_classes, args.keyframe, args.weights, device))
        else:
            net = load_net(args.num_classes, args.weights, device)
            r = Runner(args.variant, net, device, inplace=True)  # no second copy of the weights
        frames = make_frames(args.batch, h, w, device)
    base = current_memory_mb(device)
    with torch.no_grad():
        for _ in range(2):
            if args.variant == "lraspp":
                model(prep(frame))
            else:
                r.stream.step(frames[0], keyframe=True)
                r.stream.step(frames[1])
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else peak_rss_mb()
    print(json.dumps({"peak_mem_mb": peak, "base_mem_mb": base}))


def current_memory_mb(device: torch.device) -> float:
    """Memory in use once the model and inputs are ready (CUDA: allocated; CPU: RSS), and the peak
    counter restarted there where the OS allows it, so the peak is that of inference alone."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return torch.cuda.memory_allocated(device) / 2**20
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
    except OSError:
        pass
    return _proc_status_mb("VmRSS") or 0.0


def _proc_status_mb(field: str) -> float | None:
    """A memory field of /proc/self/status in MB (None where that file is not available)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def peak_rss_mb() -> float:
    """This process's peak RSS: VmHWM of /proc/self/status (the current address space only; getrusage's
    ru_maxrss would also count the parent's resident pages at fork time), else ru_maxrss."""
    peak = _proc_status_mb("VmHWM")
    return peak if peak is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure_peak_memory(variant: str, res: tuple[int, int], args, net=None) -> dict | None:
    """``peak_mem_mb`` (peak RSS or CUDA allocation while streaming a keyframe and a non-keyframe twice)
    and ``base_mem_mb`` (the same once the model and inputs are loaded) of a fresh worker process
    (on CPU with glibc's mmap threshold fixed at 128 kB: the live memory, the same in every run)."""
    weights = args.weights
    tmp = None
    if net is not None:  # hand the weights over as a file: the worker's peak is then the model's own
        tmp = tempfile.NamedTemporaryFile(suffix=".pt", delete=False)
        tmp.close()
        torch.save({k: v.cpu() for k, v in net.state_dict().items()}, tmp.name)
        weights = tmp.name
    try:
        return _peak_memory_subprocess(variant, res, args, weights)
    finally:
        if tmp is not None:
            os.unlink(tmp.name)


def _peak_memory_subprocess(variant, res, args, weights) -> dict | None:
    network = ["--method", "davss", "--keyframe", args.keyframe] if variant == "davss" else ["--variant", variant]
    cmd = [sys.executable, "-m", "tools.benchmark", "--_peak-worker", *network,
           "--resolutions", f"{res[0]}x{res[1]}", "--threads", str(args.threads), "--batch", str(args.batch),
           "--weights", weights, "--num-classes", str(args.num_classes), "--device", args.device]
    # glibc's dynamic mmap threshold would keep freed tensors of earlier frames in the heap, and the peak
    # then varies by ~10 % between identical runs; fixed, every large tensor is returned when freed.
    env = {"MALLOC_MMAP_THRESHOLD_": "131072", **os.environ}
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        print(f"[benchmark] peak-memory run of {variant} at {res} failed:\n{proc.stderr[-2000:]}", file=sys.stderr)
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------------------------
# baseline, data loading


def build_lraspp(num_classes: int, device: torch.device, bf16: bool):
    from torchvision.models.segmentation import lraspp_mobilenet_v3_large

    dtype = torch.bfloat16 if bf16 else torch.float32  # bf16 weights, as the EVSS fast mode (faster than autocast)
    model = lraspp_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=num_classes).eval()
    model = model.to(device, dtype).to(memory_format=torch.channels_last)

    def run(x):
        return model(x.to(dtype).contiguous(memory_format=torch.channels_last))["out"].argmax(1)

    return run, (lambda x: x)


def time_data_loading(h: int, w: int, repeats: int) -> dict:
    """Decode a PNG of the resolution (PIL, then to a float tensor), as the data sets do."""
    import numpy as np
    from PIL import Image

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


# ------------------------------------------------------------------------------------------------
# output difference of two variants


def output_difference(a: Runner, b: Runner, frames: list[torch.Tensor]) -> dict:
    """Largest differences of the two variants' outputs on one keyframe + one non-keyframe step."""
    with torch.no_grad():
        outs = []
        for r in (a, b):
            r.stream.previous = r.stream.features = None
            k = r.stream.step(frames[0], keyframe=True)
            n = r.stream.step(frames[1])
            outs.append((k, n))
    (ka, na), (kb, nb) = outs

    def maxdiff(x, y):
        return (x.float() - y.float()).abs().max().item()

    def scale(x):
        return x.float().abs().max().item()

    res = {
        "key_logits_max_abs_diff": maxdiff(ka["key_logits"], kb["key_logits"]),
        "key_logits_max_abs": scale(ka["key_logits"]),
        "key_pred_disagree_pct": 100 * (ka["pred"] != kb["pred"]).float().mean().item(),
        "nonkey_pred_disagree_pct": 100 * (na["pred"] != nb["pred"]).float().mean().item(),
    }
    for name in ("flow", "warped", "update", "edge"):
        res[f"{name}_max_abs_diff"] = maxdiff(na[name], nb[name])
    if "logits" in na and "logits" in nb:
        res["nonkey_logits_max_abs_diff"] = maxdiff(na["logits"], nb["logits"])
    # disagreement outside near-ties of the reference's merged logits (when it has them)
    for ref, other in ((na, nb), (nb, na)):
        if "logits" in ref:
            top2 = crop(ref["logits"], tuple(frames[1].shape[-2:])).topk(2, dim=1).values
            decided = (top2[:, 0] - top2[:, 1]) > 1e-4
            res["nonkey_pred_disagree_margin_gt_1e-4"] = int(((ref["pred"] != other["pred"]) & decided).sum())
            break
    return res


# ------------------------------------------------------------------------------------------------
# fast mode accuracy


def fast_accuracy(args) -> dict:
    """mIoU of exact vs ``--fast-variant`` on the synthetic validation windows (keyframe distance d), for
    a trained EVSS checkpoint (``--weights FILE``; the deterministic make_weights.py nets segment nothing)."""
    from engine.metrics import ConfusionMatrix

    if not os.path.isfile(args.weights):
        raise SystemExit(f"--fast-accuracy needs a trained EVSS checkpoint: --weights {args.weights!r} is not a file "
                         "(e.g. runs/demo/evss/final.pth from bash run/demo.sh)")
    device = torch.device(args.device)
    net = load_net(args.num_classes, args.weights, device)
    runners = {name: Runner(name, net, device) for name in ("exact", args.fast_variant)}
    try:
        from dataset import build_dataset
        ds = build_dataset("synthetic", split="val", mode="eval", **json.loads(args.synthetic_kwargs))
        source = "synthetic val"
    except Exception as exc:  # noqa: BLE001 - the data set may not exist yet
        raise SystemExit(f"synthetic val set unavailable: {exc!r}")
    cms = {name: ConfusionMatrix(args.num_classes) for name in runners}
    agree = ConfusionMatrix(args.num_classes)
    n = min(len(ds), args.accuracy_windows)
    for i in range(n):
        sample = ds[i]
        frames = sample["frames"] if isinstance(sample, dict) else sample[0]
        label = sample["label"] if isinstance(sample, dict) else sample[1]
        frames = frames.to(device)
        label = label.to(device).long()
        d = args.accuracy_distance
        clip = [frames[j:j + 1] for j in range(frames.shape[0] - 1 - d, frames.shape[0])]
        preds = {name: r.model.predict_clip(clip) for name, r in runners.items()}
        for name, p in preds.items():
            cms[name].update(p[0], label.view(p[0].shape))
        agree.update(preds[args.fast_variant][0], preds["exact"][0])
    res = {"source": source, "windows": n, "distance": args.accuracy_distance, "weights": args.weights}
    for name, cm in cms.items():
        res[f"miou_{name}"] = 100 * float(cm.miou())
    res["miou_change_points"] = res[f"miou_{args.fast_variant}"] - res["miou_exact"]
    res["agreement_miou_fast_vs_exact"] = 100 * float(agree.miou())
    return res


# ------------------------------------------------------------------------------------------------
# main


def build_runners(variants: list[str], args, device: torch.device) -> tuple[dict, dict]:
    """Runners in ``--method`` order (EVSS: one per variant) and the network each measures."""
    runners, nets = {}, {}
    for method in args.method:
        if method == "davss":
            net = load_davss(args.num_classes, args.keyframe, args.weights, device)
            runners["davss"], nets["davss"] = DAVSSRunner(net), net
        else:
            net = load_net(args.num_classes, args.weights, device)
            for name in variants:
                runners[name], nets[name] = Runner(name, net, device), net
    return runners, nets


def run_resolution(res, variants, args, device, lraspp: bool, conv_peaks: dict | None = None) -> dict:
    h, w = res
    runners, nets = build_runners(variants, args, device)
    frames = make_frames(args.batch, h, w, device)
    fns = {name: r.stage_functions(frames) for name, r in runners.items()}
    if lraspp:
        for bf16 in (False, True):
            run, _ = build_lraspp(args.num_classes, device, bf16)
            fns[f"lraspp_{'bf16' if bf16 else 'fp32'}"] = {"key_step": (lambda run=run: run(frames[0]))}
    times, faults = time_stages(fns, args.repeats, args.warmup, device)
    result = {}
    for name, stages in times.items():
        entry = {f"{stage}_ms": statistics.median(v) for stage, v in stages.items() if v}
        entry["spread"] = {stage: _stats(v) for stage, v in stages.items() if v}
        entry["faults"] = {stage: statistics.median(v) for stage, v in faults[name].items() if v}
        if name in runners:
            for k in args.ks:
                entry[f"amortised_k{k}_ms"] = (entry["key_step_ms"] + (k - 1) * entry["nonkey_ms"]) / k
            if not args.no_flops:
                gf = count_gflops(runners[name], frames)
                entry["gflops"] = gf
                entry["gflop_per_s"] = {stage: gf[stage] / (entry[f"{stage}_ms"] / 1e3)
                                        for stage in gf if entry.get(f"{stage}_ms")}
                if conv_peaks:
                    peak = conv_peaks[str(runners[name].dtype).removeprefix("torch.")]
                    entry["pct_of_conv_peak"] = {stage: 100 * rate / peak
                                                 for stage, rate in entry["gflop_per_s"].items()}
            if not args.no_memory:
                mem = measure_peak_memory(name, res, args, nets[name]) or {"peak_mem_mb": None}
                entry.update(mem)
                if mem["peak_mem_mb"] is not None:
                    entry["inference_mem_mb"] = mem["peak_mem_mb"] - mem["base_mem_mb"]
        result[name] = entry
    if len(args.method) == 2:
        first, second = runners
        a, b = result[first], result[second]
        result["compare_methods"] = {
            "runners": list(runners),
            "ratios": {stage: a[f"{stage}_ms"] / b[f"{stage}_ms"] for stage in SHARED_STAGES},
            "ratio_ranges": {stage: paired_ratio_range(times[first][stage], times[second][stage])
                             for stage in SHARED_STAGES},
            "amortised_ratios": {f"k{k}": a[f"amortised_k{k}_ms"] / b[f"amortised_k{k}_ms"] for k in args.ks},
        }
    elif len(variants) == 2:
        a, b = variants
        ra, rb = result[a], result[b]
        stages = ("key", "key_step", "flownet", "warp", "conet", "fusion", "nonkey")
        result["compare"] = {
            "ratios": {stage: ra[f"{stage}_ms"] / rb[f"{stage}_ms"] for stage in stages},
            "ratio_ranges": {stage: paired_ratio_range(times[a][stage], times[b][stage]) for stage in stages},
            "amortised_ratios": {f"k{k}": ra[f"amortised_k{k}_ms"] / rb[f"amortised_k{k}_ms"] for k in args.ks},
            "difference": output_difference(runners[a], runners[b], frames),
        }
        if ra.get("peak_mem_mb") and rb.get("peak_mem_mb"):
            result["compare"]["peak_mem_ratio"] = ra["peak_mem_mb"] / rb["peak_mem_mb"]
            result["compare"]["inference_mem_ratio"] = ra["inference_mem_mb"] / rb["inference_mem_mb"]
    return result


def _ratios_text(compare: dict) -> str:
    """``stage 2.10x (1.95-2.21)``: the ratio of the medians and the range of the paired ratios."""
    return ", ".join(f"{stage} {ratio:.2f}x ({lo:.2f}-{hi:.2f})"
                     for (stage, ratio), (lo, hi) in zip(compare["ratios"].items(), compare["ratio_ranges"].values()))


def print_table(results: dict, variants, args) -> None:
    cols = [c for c in STAGES if any(f"{c}_ms" in e for res in results["resolutions"].values() for e in res.values())]
    width = {c: max(9, len(c)) for c in cols}
    print(f"\nthreads {torch.get_num_threads()}, batch {args.batch}, device {args.device}, "
          f"median of {args.repeats} runs (ms); malloc: {results.get('malloc', 'glibc default')}")
    header = f"{'resolution':>10} {'variant':>13} " + " ".join(f"{c:>{width[c]}}" for c in cols) + \
        " " + " ".join(f"{'k=' + str(k):>8}" for k in args.ks) + f" {'peakMB':>7} {'inferMB':>7}"
    print(header)
    for res_key, res in results["resolutions"].items():
        for name, e in res.items():
            if name.startswith("compare"):
                continue
            vals = " ".join(f"{e[c + '_ms']:{width[c]}.1f}" if (c + "_ms") in e else " " * width[c] for c in cols)
            am = " ".join(f"{e['amortised_k' + str(k) + '_ms']:8.1f}" if ("amortised_k%d_ms" % k) in e
                          else f"{e.get('key_step_ms', 0):8.1f}" for k in args.ks)
            mem = " ".join(f"{'-' if e.get(k) is None else str(round(e[k])):>7}"
                           for k in ("peak_mem_mb", "inference_mem_mb"))
            print(f"{res_key:>10} {name:>13} {vals} {am} {mem}")
        for name, e in res.items():
            if not name.startswith("compare") and e.get("faults"):
                print(f"{'':>10} {name:>13} minor page faults per call: " +
                      ", ".join(f"{s} {round(n)}" for s, n in e["faults"].items()))
        for name, e in res.items():
            if not name.startswith("compare") and "gflops" in e:
                pct = e.get("pct_of_conv_peak", {})
                gf = ", ".join(f"{s} {e['gflops'][s]:.1f} GFLOP @ {e['gflop_per_s'].get(s, 0):.0f} GFLOP/s" +
                               (f" ({pct[s]:.0f} %)" if s in pct else "") for s in e["gflops"])
                print(f"{'':>10} {name:>13} {gf}")
        if "compare" in res:
            c = res["compare"]
            a, b = variants
            print(f"{'':>10} {a}/{b} time ratios: " + _ratios_text(c) +
                  "; amortised " + ", ".join(f"{k} {v:.2f}x" for k, v in c["amortised_ratios"].items()) +
                  (f"; peak memory {c['peak_mem_ratio']:.2f}x (inference alone {c['inference_mem_ratio']:.2f}x)"
                   if "peak_mem_ratio" in c else ""))
            print(f"{'':>10} largest output difference: " +
                  ", ".join(f"{k} {v:.3g}" for k, v in c["difference"].items()))
        if "compare_methods" in res:
            c = res["compare_methods"]
            a, b = c["runners"]
            print(f"{'':>10} {a}/{b} time ratios: " + _ratios_text(c) +
                  "; amortised " + ", ".join(f"{k} {v:.2f}x" for k, v in c["amortised_ratios"].items()))
    peaks = results.get("conv_peak_gflop_per_s")
    if peaks:
        print(f"(%: of the conv peak in the variant's precision: a {PEAK_LAYER['channels']}->{PEAK_LAYER['channels']} "
              f"3x3 convolution at {PEAK_LAYER['size'][0]}x{PEAK_LAYER['size'][1]} runs at "
              f"{peaks['float32']:.0f} GFLOP/s float32, {peaks['bfloat16']:.0f} bfloat16 here; "
              "FLOPs are the direct convolutions', so Winograd layers can pass 100 %)")
    dl = results.get("data_loading")
    if dl:
        print("data loading (not in the model timings): " +
              ", ".join(f"{k} PNG decode {v['png_decode_ms']:.1f} ms" for k, v in dl.items()))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--resolutions", type=lambda s: [parse_resolution(x) for x in s.split(",")],
                   default=[(512, 1024), (1024, 2048)], help="comma-separated HxW list")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's default)")
    p.add_argument("--ks", type=lambda s: [int(x) for x in s.split(",")], default=[1, 5, 10],
                   help="keyframe intervals for the amortised cost")
    p.add_argument("--method", type=parse_methods, default=["evss"],
                   help="evss, davss, or both comma-separated (interleaved; ratios first/second)")
    p.add_argument("--keyframe", choices=KEYFRAME_NETWORKS, default="csrnet", help="DAVSS's keyframe network")
    variants = f"{', '.join(VARIANTS)}, or an optimised one with @SCALE (e.g. fast@0.75)"
    p.add_argument("--variant", type=lambda t: t if t == "lraspp" else parse_variant(t), default="exact",
                   help=f"EVSS's variant: {variants}; or lraspp")
    p.add_argument("--compare", nargs=2, type=parse_variant, metavar=("A", "B"),
                   help=f"two EVSS variants, interleaved: {variants}")
    p.add_argument("--baseline", choices=("lraspp",), default=None)
    p.add_argument("--device", default="cpu")
    p.add_argument("--num-classes", type=int, default=19)
    p.add_argument("--weights", default="citys", help="make_weights.py data set (citys, camvid) or 'random' "
                   "(EVSS), or a state-dict file; DAVSS: random unless a file")
    p.add_argument("--json", type=Path, default=None, help="write the results here")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    p.add_argument("--no-flops", action="store_true", help="skip the FLOP counting")
    p.add_argument("--fast-accuracy", action="store_true", help="only measure the fast mode's mIoU change")
    p.add_argument("--fast-variant", default="fast", type=parse_variant,
                   help="the optimised variant --fast-accuracy compares with exact (exact-direct: Winograd's effect; "
                   "fast@0.75: the fast mode on non-keyframes resized by 0.75)")
    p.add_argument("--accuracy-windows", type=int, default=200, help="at most this many validation windows")
    p.add_argument("--accuracy-distance", type=int, default=5)
    p.add_argument("--synthetic-kwargs", default='{"num_clips": 12, "clip_len": 20, "height": 96, "width": 192}',
                   help="JSON dict of SyntheticVideoDataset arguments (default: the demo's validation clips)")
    p.add_argument("--malloc", choices=("retain", "default"), default="retain",
                   help="retain: glibc keeps freed large tensors for reuse (engine.malloc; every variant in the "
                   "process gets it); default: glibc's own thresholds")
    p.add_argument("--_peak-worker", dest="peak_worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.fast_variant in ("original", "exact"):
        p.error(f"--fast-variant compares an optimised variant with exact; got {args.fast_variant!r}")
    if args.compare and args.method != ["evss"]:
        p.error("--compare compares two EVSS variants; use --method davss,evss --variant V for DAVSS against EVSS")

    if args.threads is None:
        args.threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if args.peak_worker:
        peak_memory_worker(args)
        return 0
    malloc = retain_freed_memory() if args.malloc == "retain" else "glibc default"
    if args.fast_accuracy:
        res = fast_accuracy(args)
        print(json.dumps(res, indent=1))
        if args.json:
            atomic_write_json({"environment": collect_env(), "fast_accuracy": res}, args.json)
        return 0

    variants = list(args.compare) if args.compare else [args.variant]
    results = {"environment": collect_env(), "malloc": malloc, "threads": torch.get_num_threads(), "batch": args.batch,
               "device": args.device, "repeats": args.repeats, "warmup": args.warmup,
               "variants": variants, "weights": args.weights, "resolutions": {}, "data_loading": {}}
    conv_peaks = None if args.no_flops else measure_conv_peaks(device, max(3, args.repeats))
    if conv_peaks:
        results["conv_peak_gflop_per_s"] = conv_peaks
    if "davss" in args.method:
        results.update(methods=args.method, davss_keyframe=args.keyframe,
                       davss_weights=args.weights if os.path.isfile(args.weights) else "random")
    names = [name for m in args.method for name in (["davss"] if m == "davss" else variants)]
    if REFERENCE_TIMING.is_file():
        results["reference"] = str(REFERENCE_TIMING)
    for res in args.resolutions:
        key = f"{res[0]}x{res[1]}"
        print(f"[benchmark] {key}: {', '.join(names)}" + (" + lraspp" if args.baseline else ""), flush=True)
        results["resolutions"][key] = run_resolution(res, variants, args, device, args.baseline == "lraspp", conv_peaks)
        results["data_loading"][key] = time_data_loading(res[0], res[1], max(1, args.repeats))
        # the schema's flat keys, for the first runner
        results[key] = {k: v for k, v in results["resolutions"][key][names[0]].items() if k != "spread"}
        if args.baseline:
            for name in ("lraspp_fp32", "lraspp_bf16"):
                results[key][f"{name}_ms"] = results["resolutions"][key][name]["key_step_ms"]
            results[key]["amortised_k10_vs_lraspp_fp32"] = (results[key]["amortised_k10_ms"] /
                                                           results[key]["lraspp_fp32_ms"]) if 10 in args.ks else None
    if args.json:
        atomic_write_json(results, args.json)
        print(f"[benchmark] wrote {args.json}")
    print_table(results, variants, args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
