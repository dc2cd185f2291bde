"""Bar chart of benchmark JSON files: per runner, the keyframe, the non-keyframe step by stage
(FlowNet, warp, CoNet, fusion) and the amortised per-frame cost at k = 10; per-frame baselines
(``lraspp_*``) as one bar.

Several files merge in order: each contributes the runners it has that no earlier file had (so the
first file's ``original`` is the one shown). Times from several files come from separate runs; the
default title says how many.
"""
from __future__ import annotations

import json
from pathlib import Path

from .variants import BenchmarkError

__all__ = ["STEP_STAGES", "collect", "default_title", "plot"]

#: The non-keyframe step's stages, stacked in this order: (JSON key, label).
STEP_STAGES = (("flownet_ms", "FlowNet"), ("warp_ms", "warp"), ("conet_ms", "CoNet"), ("fusion_ms", "fusion"))
_COLOURS = {"keyframe": "#4c72b0", "FlowNet": "#dd8452", "warp": "#937860", "CoNet": "#55a868",
            "fusion": "#c44e52", "k = 10": "#8172b3", "per frame": "#64b5cd"}


def collect(paths: list[Path], resolution: str) -> list[tuple[str, dict]]:
    """(name, timings) per runner and baseline at ``resolution`` (``HxW``), in file order, first
    occurrence of each name. :class:`BenchmarkError` names a file without that resolution."""
    rows: list[tuple[str, dict]] = []
    seen: set[str] = set()
    for path in paths:
        results = json.loads(Path(path).read_text())
        entries = results.get("resolutions", {}).get(resolution)
        if entries is None:
            raise BenchmarkError(f"{path}: no results at {resolution} (has {', '.join(results.get('resolutions', {}))})")
        for name, timings in entries.items():
            if name.startswith("compare") or name in seen or not isinstance(timings, dict):
                continue
            seen.add(name)
            rows.append((name, timings))
    return rows


def default_title(paths: list[Path], resolution: str) -> str:
    """``HxW, N threads, CPU (k runs)`` from the first file's settings and environment."""
    first = json.loads(Path(paths[0]).read_text())
    return (f"{resolution}, {first.get('threads')} threads, {first['environment'].get('cpu', '')} "
            f"({len(paths)} run{'s' if len(paths) > 1 else ''})")


def plot(rows: list[tuple[str, dict]], title: str, out: Path) -> None:
    """Draw ``rows`` (from :func:`collect`) as horizontal bars in ms and write the PNG ``out``
    (atomically: a temporary file renamed into place)."""
    import matplotlib  # heavy, and only needed to draw

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 0.9 + 0.75 * len(rows)))
    labels, used = [], set()

    def bar(y: float, width: float, left: float, label: str, text: str | None = None) -> None:
        ax.barh(y, width, left=left, color=_COLOURS[label], label=None if label in used else label)
        used.add(label)
        if text is not None:
            ax.text(left + width, y, text, va="center", fontsize=8)

    for i, (name, t) in enumerate(reversed(rows)):
        y = 3 * i
        labels.append((y + 1, name))
        if "flownet_ms" not in t:  # a per-frame baseline: one bar
            bar(y + 1, t["key_step_ms"], 0.0, "per frame", f" {t['key_step_ms']:.0f}")
            continue
        bar(y + 2, t["key_ms"], 0.0, "keyframe", f" {t['key_ms']:.0f}")
        left = 0.0
        for key, stage in STEP_STAGES:
            bar(y + 1, t[key], left, stage)
            left += t[key]
        ax.text(t["nonkey_ms"], y + 1, f" {t['nonkey_ms']:.0f} (step)", va="center", fontsize=8)
        bar(y, t["amortised_k10_ms"], 0.0, "k = 10", f" {t['amortised_k10_ms']:.0f} (k = 10)")
    ax.set_yticks([y for y, _ in labels], [name for _, name in labels])
    ax.set_xlabel("ms per frame (median)")
    ax.set_title(title, fontsize=10)
    ax.legend(loc="lower right", fontsize=8)
    ax.margins(x=0.15)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.stem}.tmp{out.suffix}")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(out)
