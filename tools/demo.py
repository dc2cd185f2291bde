"""The main job: train all three EVSS stages on the embedded synthetic video, evaluate, report.

    python -m tools.demo [--out runs/demo] [--threads N] [STAGE:key=value ...]

Stage 1 (CSRNet), stage 1b (FlowNet, distilled from OpenCV DIS) and stage 2 (FlowNet + CoNet with the
original's losses) train from ``configs/synthetic_*.yaml``; a stage whose ``final.pth`` exists in the
run folder is reused. Then the synthetic validation clips are evaluated per keyframe distance
d = 1..9 (with d = 0, the keyframe network, and plain warping without rectification), for temporal
consistency (EVSS streaming with a keyframe every 5 frames and the per-frame keyframe network; flow
from OpenCV DIS, independent of the model), and for speed at the demo resolution. The run folder
gets ``report.json``, ``report.md``, ``miou_vs_distance.png`` and ``clip.png``; the last line printed
is one JSON object with ``miou_keyframe``, ``miou_warp_d9``, ``miou_evss_d9``, ``wall_s``, ``report``.
"""
from __future__ import annotations

import argparse
import json
import logging
import statistics
import time
from pathlib import Path

import torch

from dataset import CITYSCAPES, colorize
from engine.atomic import atomic_write_json, atomic_write_text
from engine.environment import collect_env
from engine.evaluate import evaluate_distances
from engine.report import pct, plot_miou, results_markdown
from engine.stages import resolve_config, train
from engine.stages.data import build_val_set
from model import build_evss, load_checkpoint
from model.blocks import upsample4
from model.fusion import crop

STAGES = ("csrnet", "flownet", "evss")
DISTANCES = tuple(range(1, 10))


def train_stages(out: Path, overrides: dict[str, list[str]], threads: int) -> dict[str, float]:
    """Train (or reuse) the three stages; returns the wall time of each in seconds."""
    seconds = {}
    for stage in STAGES:
        final = out / stage / "final.pth"
        if final.is_file():
            print(f"[demo] {stage}: reusing {final}")
            seconds[stage] = 0.0
            continue
        extra = [f"out_dir={out / stage}", f"threads={threads}", "train.progress=true"]
        if stage == "evss":
            extra += [f"model.csrnet={out / 'csrnet' / 'final.pth'}", f"model.flownet={out / 'flownet' / 'final.pth'}"]
        start = time.perf_counter()
        print(f"[demo] training {stage} (configs/synthetic_{stage}.yaml)", flush=True)
        train(stage, f"configs/synthetic_{stage}.yaml", extra + overrides.get(stage, []))
        seconds[stage] = round(time.perf_counter() - start, 1)
        print(f"[demo] {stage} done in {seconds[stage]} s", flush=True)
    return seconds


def time_steps(net, frames: torch.Tensor, repeats: int = 5) -> dict[str, float]:
    """Median ms of a keyframe and of a non-keyframe step at the clip's resolution (batch 1)."""
    stream = net.stream()
    key, nonkey = [], []
    with torch.no_grad():
        for r in range(repeats + 1):
            start = time.perf_counter()
            stream.step(frames[0:1], keyframe=True)
            middle = time.perf_counter()
            stream.step(frames[1:2])
            end = time.perf_counter()
            if r:  # the first round warms up
                key.append(middle - start)
                nonkey.append(end - middle)
    key_ms, nonkey_ms = 1000 * statistics.median(key), 1000 * statistics.median(nonkey)
    return {"key_ms": round(key_ms, 2), "nonkey_ms": round(nonkey_ms, 2),
            "amortised_ms_k10": round((key_ms + 9 * nonkey_ms) / 10, 2), "threads": torch.get_num_threads(),
            "size": list(frames.shape[-2:])}


def clip_figure(net, sample: dict, path: Path, classes) -> None:
    """Keyframe, target, ground truth, plain warping, EVSS and its distortion map at d = 9."""
    import matplotlib  # optional heavy dependency, needed for this figure only

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    frames = sample["frames"]
    size = tuple(frames.shape[-2:])
    out = net.segment_clip([f[None] for f in frames[-10:]])
    warp_only = crop(upsample4(out["warped"][-1]), size).argmax(1)[0]
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


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/demo", help="run folder (stages already trained there are reused)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch threads")
    parser.add_argument("overrides", nargs="*", metavar="STAGE:key=value",
                        help="config override for one stage, e.g. evss:train.iters=300")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    start = time.perf_counter()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    overrides: dict[str, list[str]] = {}
    for item in args.overrides:
        stage, _, override = item.partition(":")
        if stage not in STAGES or "=" not in override:
            parser.error(f"override {item!r} is not STAGE:key=value with STAGE in {STAGES}")
        overrides.setdefault(stage, []).append(override)

    train_seconds = train_stages(out, overrides, args.threads)

    cfg = resolve_config("evss", "configs/synthetic_evss.yaml", overrides.get("evss", []))
    val_set = build_val_set(cfg, length=max(DISTANCES) + 1)
    net = build_evss(cfg["data"]["num_classes"], wf=cfg["model"]["wf"])
    load_checkpoint(net, out / "evss" / "final.pth")
    net.eval()
    eval_start = time.perf_counter()
    print(f"[demo] evaluating {len(val_set)} validation windows at d = 0..9, plain warping and temporal consistency")
    results = evaluate_distances(net, val_set, DISTANCES, num_classes=cfg["data"]["num_classes"],
                                 ignore_index=cfg["data"]["ignore_index"], temporal=True, flow_source="dis",
                                 keyframe_interval=5, class_names=val_set.classes.names)
    eval_seconds = time.perf_counter() - eval_start
    sample = val_set[0]
    speed = time_steps(net, sample["frames"])

    plot_miou(results, out / "miou_vs_distance.png", "EVSS on the synthetic validation clips")
    clip_figure(net, sample, out / "clip.png", CITYSCAPES)
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
    print(json.dumps(summary), flush=True)
    return summary


if __name__ == "__main__":
    main()
