"""A preview figure of a clip (frames, labels, colour-coded flow, occlusion) for eyeballing the
generator, and the flow colour coding it uses."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from ..labels import colorize
from .classes import class_set
from .render import render_clip


def _color_wheel() -> np.ndarray:
    """The Middlebury flow colour wheel (Baker et al.), 55 RGB colours in [0, 255]."""
    segments = [(15, (255, 0, 0), (255, 255, 0)), (6, (255, 255, 0), (0, 255, 0)),
                (4, (0, 255, 0), (0, 255, 255)), (11, (0, 255, 255), (0, 0, 255)),
                (13, (0, 0, 255), (255, 0, 255)), (6, (255, 0, 255), (255, 0, 0))]
    rows = []
    for n, a, b in segments:
        k = np.arange(n)[:, None] / n
        rows.append(np.array(a) * (1 - k) + np.array(b) * k)
    return np.concatenate(rows)


def flow_to_color(flow: np.ndarray, max_magnitude: float | None = None) -> np.ndarray:
    """Colour-code a flow field (2, H, W) as (H, W, 3) uint8: hue = direction, saturation =
    magnitude / max_magnitude (default: the field's maximum)."""
    u, v = flow[0].astype(np.float64), flow[1].astype(np.float64)
    mag = np.hypot(u, v)
    scale = max_magnitude if max_magnitude else max(float(mag.max()), 1e-6)
    wheel = _color_wheel()
    n = len(wheel)
    angle = np.arctan2(-v, -u) / np.pi
    fk = (angle + 1) / 2 * (n - 1)
    k0 = np.floor(fk).astype(int) % n
    k1 = (k0 + 1) % n
    f = (fk - np.floor(fk))[..., None]
    col = ((1 - f) * wheel[k0] + f * wheel[k1]) / 255.0
    r = np.clip(mag / scale, 0, 1)[..., None]
    col = 1 - r * (1 - col)
    return np.rint(col * 255).astype(np.uint8)


def save_preview(path: str | Path, seed: int = 0, num_frames: int = 10, height: int = 128, width: int = 256,
                 num_classes: int = 19, columns: int = 4) -> dict[str, Any]:
    """Save a figure of a clip: frames, labels, backward flow (colour wheel) and the occluded pixels
    (red: not visible in the previous frame). Returns a few statistics of the clip."""
    import matplotlib  # optional heavy dependency, needed by this figure only

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    start = time.perf_counter()
    clip = render_clip(seed, num_frames, height, width, num_classes)
    seconds = time.perf_counter() - start
    classes = class_set(num_classes)
    times = np.unique(np.linspace(0, num_frames - 1, columns).round().astype(int))
    mags = np.hypot(clip["flow_bwd"][1:, 0], clip["flow_bwd"][1:, 1]) if num_frames > 1 else np.zeros(1)
    vmax = float(np.percentile(mags, 99)) if mags.size else 1.0
    fig, axes = plt.subplots(4, len(times), figsize=(3.2 * len(times), 4 * 1.7 * height / width * 1.9 + 0.6),
                             squeeze=False)
    for j, t in enumerate(times):
        occ = clip["frames"][t].copy()
        occ[clip["occ_bwd"][t]] = (255, 0, 0)
        for i, (image, title) in enumerate([
                (clip["frames"][t], f"frame {t}"), (colorize(clip["labels"][t], classes), "labels"),
                (flow_to_color(clip["flow_bwd"][t], vmax), f"flow t→t−1 (max {vmax:.1f} px)"),
                (occ, "occluded in t−1 (red)")]):
            axes[i, j].imshow(image)
            axes[i, j].set_title(title, fontsize=8)
            axes[i, j].axis("off")
    present = np.unique(clip["labels"])
    names = ", ".join(classes.names[c] for c in present if c < classes.num_classes)
    fig.suptitle(f"synthetic clip seed {seed}, {height}×{width}, {num_frames} frames "
                 f"(rendered in {seconds:.2f} s)\nclasses: {names}", fontsize=8)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return {"seconds": seconds, "flow_p50": float(np.median(mags)), "flow_p99": vmax,
            "occluded": float(clip["occ_bwd"][1:].mean()) if num_frames > 1 else 0.0}
