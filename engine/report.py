"""Readable reports of an evaluation: the Markdown table, the mIoU-vs-distance plot and the predictions
as PNG class maps."""
from __future__ import annotations

import math
import os
from pathlib import Path

import cv2
import torch


def pct(v) -> str:
    """A fraction as a percentage with two decimals; "—" for None or NaN."""
    return "—" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.2f}"


def frac(v) -> str:
    """A number with four decimals; "—" for None."""
    return "—" if v is None else f"{v:.4f}"


def results_markdown(results: dict, title: str) -> str:
    """The readable report: per distance, per class, and the temporal measures (the method's name is
    ``results["method"]``, default EVSS)."""
    method = results.get("method", "EVSS")
    d_keys = [str(d) for d in results["distances"]]
    has_warp = bool(results.get("miou_warp"))
    lines = [f"# {title}", "",
             f"{results['num_samples']} windows, {results['num_classes']} classes (ignore {results['ignore_index']}), "
             f"wf = {results['wf']}. IoU in %; mIoU = mean over classes with a non-empty union.", "",
             "## mIoU per keyframe distance", "",
             f"| d | {method} (warp + correction) | plain warping | pixel acc. {method} |",
             "|---|---|---|---|",
             f"| 0 (keyframe network) | {pct(results['miou_keyframe'])} | {pct(results['miou_keyframe'])} | "
             f"{pct(results['pixel_accuracy_keyframe'])} |"]
    for k in d_keys:
        if k == "0":
            continue
        warp = pct(results["miou_warp"].get(k)) if has_warp else "—"
        lines.append(f"| {k} | {pct(results['miou'][k])} | {warp} | {pct(results['pixel_accuracy'][k])} |")
    lines += ["", f"Mean over the distances: {pct(results.get('miou_mean'))}", "",
              f"## IoU per class ({method})", ""]
    names = results.get("class_names") or [f"class {i}" for i in range(results["num_classes"])]
    header = "| class | d=0 | " + " | ".join(f"d={k}" for k in d_keys if k != "0") + " |"
    lines += [header, "|" + "---|" * (header.count("|") - 1)]
    for c, name in enumerate(names):
        row = [pct(results["iou_per_class_keyframe"][c])]
        row += [pct(results["iou_per_class"][k][c]) for k in d_keys if k != "0"]
        lines.append(f"| {name} | " + " | ".join(row) + " |")
    if has_warp:
        lines += ["", "## IoU per class (plain warping, no correction)", "", header.replace("d=0", "d=0 (key)"),
                  "|" + "---|" * (header.count("|") - 1)]
        for c, name in enumerate(names):
            row = [pct(results["iou_per_class_keyframe"][c])]
            row += [pct(results["iou_per_class_warp"][k][c]) for k in d_keys if k != "0"]
            lines.append(f"| {name} | " + " | ".join(row) + " |")
    temporal = results.get("temporal")
    if temporal:
        lines += ["", "## Temporal consistency", "",
                  f"Flow: {temporal['flow_source']} ({temporal['flow_description']}). "
                  f"{method} streaming with a keyframe every {temporal['keyframe_interval']} frames.", "",
                  f"- TC (ETC measure): mask {temporal['mask_etc']}",
                  f"- TC (fb mask): {temporal['mask_fb']}",
                  f"- VC_n: {temporal['vc_definition']}", "",
                  "| predictor | TC ETC (%) | TC fb-masked (%) | fb-valid share | pairs | VC (%) | VC correct (%) | VC windows | mIoU on visited labels (%) |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for name in ("evss", "keyframe"):
            t = temporal[name]
            label = f"{method} k={temporal['keyframe_interval']}" if name == "evss" else "keyframe network per frame"
            lines.append(f"| {label} | {pct(t['tc_etc'])} | {pct(t['tc_fb'])} | {frac(t['fb_valid_fraction'])} | "
                         f"{t['num_pairs']} | {pct(t['vc'])} | {pct(t['vc_correct'])} | {t['vc_windows']} | "
                         f"{pct(t['miou'])} |")
    lines += ["", f"Wall time: {results['seconds']:.1f} s ({frac(results.get('seconds_per_window'))} s per window "
              f"per process, {results.get('world_size', 1)} process(es))", ""]
    return "\n".join(lines)


def plot_miou(results: dict, path: Path, title: str) -> None:
    """mIoU (%) against the keyframe distance (d = 0: the keyframe network), with plain warping when
    scored, written to ``path`` (PNG)."""
    import matplotlib  # heavy, and needed for this figure only

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ds = [d for d in results["distances"] if d > 0]
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    key = results["miou_keyframe"]

    def series(values: dict) -> list[float]:
        return [100 * values[str(d)] if values.get(str(d)) is not None else float("nan") for d in ds]

    x = [0] + ds
    ax.plot(x, [100 * key if key is not None else float("nan")] + series(results["miou"]), "o-",
            label=f"{results.get('method', 'EVSS')} (warp + correction)")
    if results.get("miou_warp"):
        ax.plot(x, [100 * key if key is not None else float("nan")] + series(results["miou_warp"]), "s--",
                label="plain warping")
    if key is not None:
        ax.axhline(100 * key, color="grey", lw=0.8, ls=":", label="keyframe network (d = 0)")
    ax.set_xlabel("keyframe distance d (frames)")
    ax.set_ylabel("mIoU (%)")
    ax.set_xticks(x)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, path)


class PredictionWriter:
    """Writes predictions as 8-bit PNG class maps ``<root>/<key>/<id>.png`` (an ``on_prediction`` hook of
    :func:`engine.evaluate.evaluate_distances`; ``/`` in ids becomes ``_``)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def __call__(self, sample_id: str, key: str, pred: torch.Tensor) -> None:
        folder = self.root / key
        folder.mkdir(parents=True, exist_ok=True)
        safe = sample_id.replace("/", "_").replace(os.sep, "_")
        cv2.imwrite(str(folder / f"{safe}.png"), pred.to("cpu", torch.uint8).numpy())
