"""The demo: train the three EVSS stages on the embedded synthetic video, evaluate, time, report.

:func:`train_demo_stages` trains (or reuses) stage 1 (CSRNet), stage 1b (FlowNet, distilled from
OpenCV DIS) and stage 2 (FlowNet + CoNet with the original's losses) from ``configs/synthetic_*.yaml``
into a run folder; :func:`run_demo` then evaluates the synthetic validation clips per keyframe
distance d = 1..9 (with d = 0, the keyframe network, and plain warping), for temporal consistency
(EVSS streaming with a keyframe every 5 frames and the per-frame keyframe network, flow from OpenCV
DIS, independent of the model) and for speed at the demo resolution, and writes ``report.json``,
``report.md``, ``miou_vs_distance.png`` and ``clip.png``.
"""
from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Mapping, Sequence

import torch

from dataset import CITYSCAPES, colorize
from engine.atomic import atomic_write_json, atomic_write_text
from engine.benchmark.stages import EVSSRunner
from engine.benchmark.timing import time_stages
from engine.environment import collect_env
from engine.evaluate import evaluate_distances
from engine.report import pct, plot_miou, results_markdown
from engine.stages import resolve_config, train
from engine.stages.data import build_val_set
from model import EVSS, build_evss, load_checkpoint
from model.fusion import crop

__all__ = ["DEMO_STAGES", "DEMO_DISTANCES", "train_demo_stages", "time_steps", "run_demo"]

DEMO_STAGES = ("csrnet", "flownet", "evss")
DEMO_DISTANCES = tuple(range(1, 10))


def train_demo_stages(out: Path, threads: int, overrides: Mapping[str, Sequence[str]] | None = None,
                      tag: str = "demo") -> dict[str, float]:
    """Train the three demo stages into ``out/<stage>`` in order, each reused when its ``final.pth``
    exists; ``overrides``: per stage, config overrides (``key=value``). Returns each stage's training
    wall time in seconds (0 when reused). Progress lines start with ``[tag]``."""
    overrides = overrides or {}
    seconds = {}
    for stage in DEMO_STAGES:
        final = out / stage / "final.pth"
        if final.is_file():
            print(f"[{tag}] {stage}: reusing {final}", flush=True)
            seconds[stage] = 0.0
            continue
        extra = [f"out_dir={out / stage}", f"threads={threads}", "train.progress=true"]
        if stage == "evss":
            extra += [f"model.csrnet={out / 'csrnet' / 'final.pth'}", f"model.flownet={out / 'flownet' / 'final.pth'}"]
        start = time.perf_counter()
        print(f"[{tag}] training {stage} (configs/synthetic_{stage}.yaml)", flush=True)
        train(stage, f"configs/synthetic_{stage}.yaml", extra + list(overrides.get(stage, [])))
        seconds[stage] = round(time.perf_counter() - start, 1)
        print(f"[{tag}] {stage} done in {seconds[stage]} s", flush=True)
    return seconds


def time_steps(net: EVSS, frames: torch.Tensor, repeats: int = 5) -> dict[str, float]:
    """Median ms of the stream's keyframe step and of a non-keyframe step after it, on ``frames[0]``
    and ``frames[1]`` (T×3×H×W, batch 1), after one warm-up round."""
    stages = EVSSRunner("original", net).stage_functions([frames[0:1], frames[1:2]])
    times, _ = time_stages({"demo": {s: stages[s] for s in ("key_step", "nonkey")}}, repeats, 1, frames.device)
    key_ms, nonkey_ms = (statistics.median(times["demo"][s]) for s in ("key_step", "nonkey"))
    return {"key_ms": round(key_ms, 2), "nonkey_ms": round(nonkey_ms, 2),
            "amortised_ms_k10": round((key_ms + 9 * nonkey_ms) / 10, 2), "threads": torch.get_num_threads(),
            "size": list(frames.shape[-2:])}


def clip_figure(net: EVSS, sample: dict, path: Path, classes=CITYSCAPES) -> None:
    """Keyframe, target, ground truth, plain warping, EVSS and its fine distortion map at d = 9."""
    import matplotlib  # heavy, and needed for this figure only

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    frames = sample["frames"]
    size = tuple(frames.shape[-2:])
    out = net.segment_clip([f[None] for f in frames[-10:]])
    warp_only = crop(net.upsample(out["warped"][-1]), size).argmax(1)[0]
    panels = [("keyframe (t-9)", frames[-10].permute(1, 2, 0)), ("target frame t", frames[-1].permute(1, 2, 0)),
              ("ground truth", colorize(sample["label"], classes)),
              ("plain warping, d=9", colorize(warp_only, classes)), ("EVSS, d=9", colorize(out["pred"][0], classes)),
              ("fine distortion map", crop(out["dm_fine"], size)[0, 0])]
    fig, axes = plt.subplots(2, 3, figsize=(10, 4.2), dpi=100)
    for ax, (title, image) in zip(axes.flat, panels):
        ax.imshow(image, cmap="magma", vmin=0, vmax=1) if title.startswith("fine") else ax.imshow(image)
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(path)


def report_markdown(report: dict, results_md: str) -> str:
    """The readable report.md of a demo run."""
    speed = report["speed"]
    lines = ["# EVSS demo on the synthetic video", "",
             "Training: " + ", ".join(f"{k} {v:.0f} s" for k, v in report["train_seconds"].items())
             + f"; evaluation {report['eval_seconds']:.0f} s; total {report['wall_s']:.0f} s "
             f"on {report['env']['cpu_count']} CPU cores ({report['env']['cpu']}).", "",
             f"EVSS at d = 9 recovers {pct(report['gap_closed_d9'])} % of the gap between plain warping and the "
             "keyframe network.", "",
             f"Speed at {speed['size'][0]}×{speed['size'][1]}, batch 1, threads: {speed['threads']}; keyframe "
             f"{speed['key_ms']} ms, non-keyframe step {speed['nonkey_ms']} ms, amortised over k = 10: "
             f"{speed['amortised_ms_k10']} ms per frame.", "", results_md]
    return "\n".join(lines)


def run_demo(out: Path, threads: int, overrides: Mapping[str, Sequence[str]] | None = None) -> dict:
    """Train (or reuse), evaluate, time and report into ``out``; returns the summary (``miou_keyframe``,
    ``miou_warp_d9``, ``miou_evss_d9``, ``gap_closed_d9``, ``wall_s``, ``report``; mIoUs in [0, 1])."""
    start = time.perf_counter()
    overrides = overrides or {}
    train_seconds = train_demo_stages(out, threads, overrides)

    cfg = resolve_config("evss", "configs/synthetic_evss.yaml", list(overrides.get("evss", [])))
    val_set = build_val_set(cfg, length=max(DEMO_DISTANCES) + 1)
    net = build_evss(cfg["data"]["num_classes"], wf=cfg["model"]["wf"])
    load_checkpoint(net, out / "evss" / "final.pth")
    net.eval()
    eval_start = time.perf_counter()
    print(f"[demo] evaluating {len(val_set)} validation windows at d = 0..9, plain warping and temporal consistency")
    results = evaluate_distances(net, val_set, DEMO_DISTANCES, num_classes=cfg["data"]["num_classes"],
                                 ignore_index=cfg["data"]["ignore_index"], temporal=True, flow_source="dis",
                                 keyframe_interval=5, class_names=val_set.classes.names)
    eval_seconds = time.perf_counter() - eval_start
    sample = val_set[0]
    speed = time_steps(net, sample["frames"])

    plot_miou(results, out / "miou_vs_distance.png", "EVSS on the synthetic validation clips")
    clip_figure(net, sample, out / "clip.png")
    key, warp9, evss9 = results["miou_keyframe"], results["miou_warp"]["9"], results["miou"]["9"]
    report = {
        "miou_keyframe": key, "miou_warp_d9": warp9, "miou_evss_d9": evss9,
        "gap_closed_d9": (evss9 - warp9) / (key - warp9) if key > warp9 else None,
        "train_seconds": train_seconds, "eval_seconds": round(eval_seconds, 1), "speed": speed,
        "results": results, "env": collect_env(), "config_evss": cfg,
        "figures": {"miou_vs_distance": str(out / "miou_vs_distance.png"), "clip": str(out / "clip.png")},
    }
    report["wall_s"] = round(time.perf_counter() - start, 1)
    atomic_write_json(report, out / "report.json")
    atomic_write_text(report_markdown(report, results_markdown(results, "Accuracy and consistency")),
                      out / "report.md")
    summary = {k: report[k] for k in ("miou_keyframe", "miou_warp_d9", "miou_evss_d9", "gap_closed_d9", "wall_s")}
    summary["report"] = str(out / "report.json")
    return summary
