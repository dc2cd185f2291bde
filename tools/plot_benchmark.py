"""Bar chart of ``tools/benchmark.py --json`` results: per variant, the keyframe, the non-keyframe step
by stage (FlowNet, warp, CoNet, fusion) and the amortised per-frame cost at k = 10.

    python -m tools.plot_benchmark runs/bench/compare_exact.json runs/bench/compare_fast.json \\
        --resolution 1024x2048 --out figure/speed_1024x2048.png

Each file contributes its variants (a variant already taken from an earlier file is skipped, so the
first file's ``original`` is the one shown) and its per-frame baselines (``lraspp_*``). Times come
from separate runs when several files are given; the title says which runs.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

STEP_STAGES = (("flownet_ms", "FlowNet"), ("warp_ms", "warp"), ("conet_ms", "CoNet"), ("fusion_ms", "fusion"))


def collect(paths: list[Path], resolution: str) -> list[tuple[str, dict]]:
    """(label, timings) per variant and baseline, in file order, first occurrence of each name."""
    rows: list[tuple[str, dict]] = []
    seen: set[str] = set()
    for path in paths:
        results = json.loads(path.read_text())
        entries = results.get("resolutions", {}).get(resolution)
        if entries is None:
            raise SystemExit(f"{path}: no results at {resolution} (has {', '.join(results.get('resolutions', {}))})")
        for name, timings in entries.items():
            if name == "compare" or name in seen or not isinstance(timings, dict):
                continue
            seen.add(name)
            rows.append((name, timings))
    return rows


def plot(rows: list[tuple[str, dict]], title: str, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 0.9 + 0.75 * len(rows)))
    colours = {"keyframe": "#4c72b0", "FlowNet": "#dd8452", "warp": "#937860", "CoNet": "#55a868",
               "fusion": "#c44e52", "k = 10": "#8172b3", "per frame": "#64b5cd"}
    labels, used = [], set()
    for i, (name, t) in enumerate(reversed(rows)):
        y = 3 * i
        labels.append((y + 1, name))
        if "flownet_ms" not in t:  # a per-frame baseline: one bar
            ax.barh(y + 1, t["key_step_ms"], color=colours["per frame"],
                    label=None if "per frame" in used else "per frame")
            ax.text(t["key_step_ms"], y + 1, f" {t['key_step_ms']:.0f}", va="center", fontsize=8)
            used.add("per frame")
            continue
        ax.barh(y + 2, t["key_ms"], color=colours["keyframe"], label=None if "keyframe" in used else "keyframe")
        ax.text(t["key_ms"], y + 2, f" {t['key_ms']:.0f}", va="center", fontsize=8)
        left = 0.0
        for key, stage in STEP_STAGES:
            ax.barh(y + 1, t[key], left=left, color=colours[stage], label=None if stage in used else stage)
            left += t[key]
            used.add(stage)
        ax.text(t["nonkey_ms"], y + 1, f" {t['nonkey_ms']:.0f} (step)", va="center", fontsize=8)
        ax.barh(y, t["amortised_k10_ms"], color=colours["k = 10"], label=None if "k = 10" in used else "k = 10")
        ax.text(t["amortised_k10_ms"], y, f" {t['amortised_k10_ms']:.0f} (k = 10)", va="center", fontsize=8)
        used.update(("keyframe", "k = 10"))
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


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("json", nargs="+", type=Path, help="tools/benchmark.py --json files")
    p.add_argument("--resolution", default="1024x2048", help="HxW key of the results")
    p.add_argument("--out", type=Path, required=True, help="PNG to write")
    p.add_argument("--title", default=None)
    args = p.parse_args(argv)
    rows = collect(args.json, args.resolution)
    first = json.loads(args.json[0].read_text())
    title = args.title or (f"{args.resolution}, {first.get('threads')} threads, {first['environment'].get('cpu', '')} "
                           f"({len(args.json)} run{'s' if len(args.json) > 1 else ''})")
    plot(rows, title, args.out)
    print(f"[plot] wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
