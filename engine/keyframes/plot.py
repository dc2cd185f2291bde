"""The sweep's figure: mIoU against the keyframe fraction and against the ms per frame."""
from __future__ import annotations

import os
from pathlib import Path

from engine.atomic import atomic_open

__all__ = ["plot_sweep"]

_STYLES = {"fixed": ("o-", "fixed interval k"), "adaptive": ("s-", "adaptive threshold"),
           "budget": ("^-", "budget"), "oracle": ("k*--", "oracle (hindsight)")}


def _series(rows: list[dict], x: str) -> tuple[list[float], list[float]]:
    kept = sorted((r[x], r["miou"]) for r in rows if r.get("miou") is not None)
    return [p[0] for p in kept], [p[1] for p in kept]


def plot_sweep(results: dict, path: str | os.PathLike, title: str) -> None:
    """Two panels from a sweep's results (:func:`engine.keyframes.sweep.run_sweep`): mIoU (%) vs keyframe
    fraction (fixed, adaptive, budget, oracle; fixed points labelled with k) and mIoU vs ms per frame
    (fixed, adaptive, budget); written atomically to ``path`` (PNG)."""
    import matplotlib  # heavy, and needed for this figure only

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2), dpi=100)
    for name in ("fixed", "adaptive", "budget", "oracle"):
        style, label = _STYLES[name]
        left.plot(*_series(results[name], "keyframe_fraction"), style, label=label, ms=5)
        if name != "oracle":
            right.plot(*_series(results[name], "ms_per_frame"), style, label=label, ms=5)
    for row in results["fixed"]:
        if row["miou"] is not None:
            left.annotate(f"k={row['k']}", (row["keyframe_fraction"], row["miou"]), fontsize=7,
                          xytext=(3, -9), textcoords="offset points")
    left.set_xlabel("keyframe fraction (keyframes / frames)")
    right.set_xlabel("ms per frame (measured step times)")
    for ax in (left, right):
        ax.set_ylabel("mIoU (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    with atomic_open(Path(path), "wb") as handle:
        fig.savefig(handle, format="png")
    plt.close(fig)
