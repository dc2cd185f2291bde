"""Flow quality measures used to choose how stage 1b trains the FlowNet.

Two measures, each computed for any :class:`engine.flow_estimators.FlowEstimator` (the called
convention everywhere is ``estimator(current, previous)`` -> backward flow current→previous in
pixels of the input, i.e. ``current(x) ≈ previous(x + flow(x))``):

1. **End-point error on an MPI-Sintel sample pair** (a ``sintel_sample`` folder: clean pass,
   alley_2, 436×1024).  Its ground truth ``frame_0002.flo`` is the *forward* flow 2→3,
   ``I2(x) ≈ I3(x + F(x))``, which is exactly the backward convention with current = frame 2 and
   previous = frame 3; so the estimate is ``estimator(frame2, frame3)`` and it is compared with F
   directly.  Pixels marked in ``invalid/frame_0002.png`` are left out of every average; the EPE is
   reported on all (valid) pixels and on non-occluded (``occlusions/frame_0002.png`` = 0) pixels.
2. **Warping error on CamVid** (``camvid_segnet/val``: 101 frames of sequence 0016E5, 15 Hz, every
   consecutive pair): the previous frame warped onto the current one with the estimated flow
   (``model.warp``, bilinear, borders clamped), mean absolute RGB difference in [0, 1] and PSNR
   (dB, peak 1) over all pixels, and the mean absolute difference on the pixels that pass the
   forward–backward consistency test (:func:`engine.metrics.fb_consistency_mask`, α=0.01, β=0.5),
   with the estimator's *own* forward/backward flows and with a *common* reference mask (OpenCV
   DIS's) so that every estimator is also scored on the same pixels.  The zero flow (no warping)
   is the baseline.

The estimators come from :func:`engine.flow_estimators.make_flow_estimator` (:func:`build_estimator`
reads the command line's names); a FlowNetS checkpoint's 1/4-grid flow is upsampled bilinearly ×4
with its values ×4 (:class:`engine.flow_estimators.ModelFlow`).
"""
from __future__ import annotations

import itertools
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from tqdm import tqdm

from dataset.errors import DatasetError, FrameSizeError, MissingFileError
from engine.config import ConfigError
from engine.flow_estimators import FlowEstimator, OpenCVFlow, make_flow_estimator
from engine.metrics import fb_consistency_mask
from model import warp

__all__ = [
    "FLO_MAGIC",
    "SintelSample",
    "build_estimator",
    "camvid_pairs",
    "camvid_warping_error",
    "endpoint_error",
    "load_image",
    "load_sintel_sample",
    "read_flo",
    "sintel_epe",
    "warping_error",
    "write_flo",
]

FLO_MAGIC = 202021.25  # b"PIEH" read as a little-endian float32


# ---------------------------------------------------------------------------------------------- I/O
def read_flo(path: str | Path) -> np.ndarray:
    """Read a Middlebury ``.flo`` file → H×W×2 float32 array of (u, v) = (dx, dy) in pixels.

    Layout: float32 magic 202021.25, int32 width, int32 height, then width·height (u, v) float32
    pairs, row-major, little-endian.
    """
    path = Path(path)
    with open(path, "rb") as handle:
        magic = np.fromfile(handle, "<f4", count=1)
        if magic.size != 1 or magic[0] != np.float32(FLO_MAGIC):
            raise DatasetError(f"{path}: not a .flo file (magic {magic[:1].tolist()}, expected {FLO_MAGIC})")
        size = np.fromfile(handle, "<i4", count=2)
        if size.size != 2 or size[0] <= 0 or size[1] <= 0 or size[0] * size[1] > 1 << 28:
            raise DatasetError(f"{path}: implausible size {size.tolist()}")
        width, height = int(size[0]), int(size[1])
        data = np.fromfile(handle, "<f4", count=2 * width * height)
        if data.size != 2 * width * height:
            raise DatasetError(f"{path}: truncated ({data.size} of {2 * width * height} values)")
        if handle.read(1):
            raise DatasetError(f"{path}: trailing bytes after {width}×{height} flow values")
    return data.reshape(height, width, 2).astype(np.float32)


def write_flo(path: str | Path, flow: np.ndarray) -> None:
    """Write an H×W×2 (u, v) array as a Middlebury ``.flo`` file (used by the tests)."""
    flow = np.asarray(flow, dtype="<f4")
    if flow.ndim != 3 or flow.shape[2] != 2:
        raise ValueError(f"flow must be H×W×2, got {flow.shape}")
    height, width = flow.shape[:2]
    with open(path, "wb") as handle:
        np.array([FLO_MAGIC], "<f4").tofile(handle)
        np.array([width, height], "<i4").tofile(handle)
        np.ascontiguousarray(flow).tofile(handle)


def load_image(path: str | Path) -> Tensor:
    """An image file → 1×3×H×W float32 RGB in [0, 1]."""
    with Image.open(path) as image:
        array = np.asarray(image.convert("RGB"), dtype=np.uint8)
    return torch.from_numpy(array.copy()).permute(2, 0, 1).unsqueeze(0).float() / 255.0


def _load_mask(path: Path) -> Tensor:
    with Image.open(path) as image:
        return torch.from_numpy(np.asarray(image.convert("L")) > 127)


@dataclass
class SintelSample:
    frames: dict           # {1, 2, 3}: 1×3×H×W float in [0, 1]
    flow: Tensor           # 1×2×H×W ground-truth forward flow 2→3 (pixels)
    occluded: Tensor       # H×W bool (True: occluded in frame 3)
    invalid: Tensor        # H×W bool (True: no valid ground truth)
    root: Path


def load_sintel_sample(root: str | Path) -> SintelSample:
    """Load ``sintel_sample/`` (see its README): frames 1–3, ``frame_0002.flo`` and its two masks."""
    root = Path(root)
    frames = {i: load_image(root / f"frame_000{i}.png") for i in (1, 2, 3)}
    flow = torch.from_numpy(read_flo(root / "frame_0002.flo")).permute(2, 0, 1).unsqueeze(0).contiguous()
    occluded = _load_mask(root / "occlusions" / "frame_0002.png")
    invalid = _load_mask(root / "invalid" / "frame_0002.png")
    size = tuple(frames[2].shape[-2:])
    for what, t in (("flow", flow), ("occlusions", occluded), ("invalid", invalid)):
        if tuple(t.shape[-2:]) != size:
            raise FrameSizeError(f"{root}: {what} is {tuple(t.shape[-2:])}, frames are {size}")
    return SintelSample(frames, flow, occluded, invalid, root)


# ---------------------------------------------------------------------------------------------- EPE
def endpoint_error(flow: Tensor, gt: Tensor, mask: Tensor | None = None) -> float:
    """Mean Euclidean distance between two B×2×H×W flows over ``mask`` (B×H×W or H×W bool; all if None)."""
    if flow.shape != gt.shape:
        raise ValueError(f"flow {tuple(flow.shape)} and ground truth {tuple(gt.shape)} differ")
    epe = (flow.double() - gt.double()).pow(2).sum(1).sqrt()
    if mask is None:
        return float(epe.mean())
    mask = mask.to(epe.device).expand_as(epe)
    if not bool(mask.any()):
        return float("nan")
    return float(epe[mask].mean())


def sintel_epe(estimator: FlowEstimator, sample: SintelSample) -> dict:
    """EPE of ``estimator(frame2, frame3)`` against the 2→3 ground truth: all valid / non-occluded / occluded."""
    start = time.perf_counter()
    flow = estimator(sample.frames[2], sample.frames[3])
    seconds = time.perf_counter() - start
    valid = ~sample.invalid
    noc = valid & ~sample.occluded
    occ = valid & sample.occluded
    return {
        "epe_all": endpoint_error(flow, sample.flow, valid),
        "epe_noc": endpoint_error(flow, sample.flow, noc),
        "epe_occ": endpoint_error(flow, sample.flow, occ),
        "mean_magnitude": float(flow.norm(dim=1)[0][valid].mean()),
        "pixels_all": int(valid.sum()), "pixels_noc": int(noc.sum()),
        "seconds": seconds,
    }


# ---------------------------------------------------------------------------------------------- estimators
def build_estimator(spec: str, device: str | torch.device = "cpu") -> FlowEstimator:
    """The estimator of a command-line spec, through :func:`engine.flow_estimators.make_flow_estimator`:
    ``dis`` | ``dis-fast`` | ``dis-ultrafast`` | ``farneback`` | ``zero`` | ``flownet:PATH[=NAME]``
    (NAME defaults to ``flownet-<run folder>`` for a run's final/last/best.pth, else ``flownet-<stem>``)."""
    if spec in ("zero", "farneback"):
        return make_flow_estimator(spec)
    if spec == "dis" or spec.startswith("dis-"):
        return make_flow_estimator("dis", preset=spec[4:] or "medium")
    if spec.startswith("flownet:"):
        path, _, name = spec[len("flownet:"):].partition("=")
        if not name:
            p = Path(path)
            name = "flownet-" + (p.parent.name if p.stem in ("final", "last", "best") else p.stem)
        return make_flow_estimator("flownet", flownet_checkpoint=path, name=name, device=device)
    raise ConfigError(f"unknown flow estimator {spec!r} (dis, dis-fast, farneback, zero, flownet:PATH[=NAME])")


# ---------------------------------------------------------------------------------------------- warping error
def warping_error(previous: Tensor, current: Tensor, flow: Tensor, mask: Tensor | None = None) -> dict:
    """Photometric error of ``previous`` warped onto ``current`` with the backward flow ``flow``.

    Returns ``l1`` (mean |RGB difference| in [0, 1] units over all pixels and channels), ``mse``,
    ``psnr`` (dB, peak 1) and, when ``mask`` (B×H×W bool, True = counted) is given, ``l1_masked``,
    ``l1_sum_masked`` / ``pixels_masked`` (for pixel-weighted pooling over pairs) and ``kept``.
    """
    warped = warp(previous.float().contiguous(), flow.float().contiguous())
    diff = (warped - current.float())
    abs_err = diff.abs().mean(1)  # B×H×W, mean over channels
    mse = float(diff.double().pow(2).mean())
    out = {"l1": float(abs_err.double().mean()), "mse": mse,
           "psnr": 10.0 * math.log10(1.0 / mse) if mse > 0 else float("inf")}
    if mask is not None:
        mask = mask.to(abs_err.device).bool().expand_as(abs_err)
        n = int(mask.sum())
        s = float(abs_err.double()[mask].sum()) if n else 0.0
        out.update(l1_masked=s / n if n else float("nan"), l1_sum_masked=s, pixels_masked=n,
                   kept=n / mask.numel())
    return out


def camvid_pairs(root: str | Path, split: str = "val", max_gap: int = 2) -> list[tuple[Path, Path]]:
    """Consecutive (previous, current) frame files of ``<root>/<split>`` (SegNet layout, ``<seq>_<frame>``),
    within a sequence and at most ``max_gap`` frame numbers apart (CamVid's stored 15 Hz frames are 2 apart
    at 30 Hz numbering)."""
    root = Path(root) / split
    files = sorted(p for p in root.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if not files:
        raise MissingFileError(f"{root}: no frames")

    def key(p: Path):
        seq, _, number = p.stem.rpartition("_")
        digits = "".join(ch for ch in number if ch.isdigit())
        return seq, int(digits) if digits else None

    pairs = []
    for a, b in itertools.pairwise(files):
        (sa, na), (sb, nb) = key(a), key(b)
        if sa == sb and na is not None and nb is not None and 0 < nb - na <= max_gap:
            pairs.append((a, b))
    return pairs


def camvid_warping_error(estimators: Sequence[FlowEstimator], pairs: Iterable[tuple[Path, Path]],
                         reference: FlowEstimator | None = None, alpha: float = 0.01, beta: float = 0.5,
                         progress: bool = False) -> dict:
    """Warping error of each estimator over ``pairs`` (see the module doc), pooled over the pairs.

    ``reference`` (default: OpenCV DIS medium) gives the common occlusion mask.  Per estimator:
    ``l1_all`` (mean over pairs), ``psnr_all`` (mean over pairs), ``l1_noc_own`` and ``l1_noc_ref``
    (pixel-weighted over pairs), ``kept_own`` / ``kept_ref`` (fraction of pixels in each mask),
    ``ms_per_flow`` (one direction) and ``pairs``.
    """
    reference = reference if reference is not None else OpenCVFlow("dis", preset="medium")
    pairs = list(pairs)
    if not pairs:
        raise DatasetError("no frame pairs to evaluate")
    acc = {e.name: {"l1": 0.0, "psnr": 0.0, "own_sum": 0.0, "own_n": 0, "ref_sum": 0.0, "ref_n": 0,
                    "n_pix": 0, "seconds": 0.0, "flows": 0} for e in estimators}
    iterator = pairs
    if progress:
        iterator = tqdm(pairs, desc="camvid pairs", mininterval=5.0)
    for prev_path, cur_path in iterator:
        previous, current = load_image(prev_path), load_image(cur_path)
        ref_fw, ref_bw = reference(current, previous), reference(previous, current)
        ref_mask = fb_consistency_mask(ref_fw, ref_bw, alpha=alpha, beta=beta)
        for est in estimators:
            a = acc[est.name]
            start = time.perf_counter()
            fw = est(current, previous)
            a["seconds"] += time.perf_counter() - start
            a["flows"] += 1
            bw = est(previous, current)
            own_mask = fb_consistency_mask(fw, bw, alpha=alpha, beta=beta)
            e_own = warping_error(previous, current, fw, own_mask)
            e_ref = warping_error(previous, current, fw, ref_mask)
            a["l1"] += e_own["l1"]
            a["psnr"] += e_own["psnr"]
            a["own_sum"] += e_own["l1_sum_masked"]
            a["own_n"] += e_own["pixels_masked"]
            a["ref_sum"] += e_ref["l1_sum_masked"]
            a["ref_n"] += e_ref["pixels_masked"]
            a["n_pix"] += own_mask.numel()
    results = {}
    n = len(pairs)
    for name, a in acc.items():
        results[name] = {
            "pairs": n,
            "l1_all": a["l1"] / n,
            "psnr_all": a["psnr"] / n,
            "l1_noc_own": a["own_sum"] / a["own_n"] if a["own_n"] else float("nan"),
            "kept_own": a["own_n"] / a["n_pix"],
            "l1_noc_ref": a["ref_sum"] / a["ref_n"] if a["ref_n"] else float("nan"),
            "kept_ref": a["ref_n"] / a["n_pix"],
            "ms_per_flow": 1000.0 * a["seconds"] / max(a["flows"], 1),
        }
    return {"reference_mask": reference.name, "alpha": alpha, "beta": beta, "pairs": n,
            "first_pair": [pairs[0][0].name, pairs[0][1].name], "last_pair": [pairs[-1][0].name, pairs[-1][1].name],
            "estimators": results}
