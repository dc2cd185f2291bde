"""The main job on the embedded synthetic video: run EVSS over a clip and report every stage.

    python -m tools.demo [--out DIR] [--height 256 --width 512 --frames 10 --seed 0]

Renders one synthetic driving clip, segments it with a keyframe then nine propagated frames, and
prints per frame what each stage did (flow magnitude, share of the coarse distortion map, mean fine
map, pixels changed by rectification). The network has random weights until a trained checkpoint is
given with ``--checkpoint``. Writes ``report.json`` and a figure into the run folder; the last line
of output is one JSON object.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from dataset.labels import CITYSCAPES, colorize  # noqa: E402
from dataset.synthetic import render_clip  # noqa: E402
from engine.atomic import atomic_write_json  # noqa: E402
from engine.environment import collect_env  # noqa: E402
from model import build_evss, load_checkpoint  # noqa: E402
from model.blocks import upsample4  # noqa: E402
from model.fusion import crop  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/demo", help="run folder")
    parser.add_argument("--height", type=int, default=256)
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--frames", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--checkpoint", help="EVSS checkpoint (released or project); random weights if absent")
    args = parser.parse_args()
    start = time.perf_counter()
    torch.manual_seed(args.seed)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)

    clip = render_clip(args.seed, args.frames, args.height, args.width, num_classes=19)
    frames = torch.from_numpy(clip["frames"]).permute(0, 3, 1, 2).float().div(255)
    net = build_evss(19).eval()
    if args.checkpoint:
        load_checkpoint(net, args.checkpoint)
    stream = net.stream()
    size = tuple(frames.shape[-2:])
    rows, last = [], None
    for t in range(len(frames)):
        out = stream.step(frames[t:t + 1], keyframe=(t == 0))
        row = {"frame": t, "keyframe": out["keyframe"]}
        if not out["keyframe"]:
            warp_only = crop(upsample4(out["warped"]), size).argmax(1)
            row.update(flow_px_mean=out["flow"].norm(dim=1).mean().item(),
                       coarse_map=out["dm_coarse"].mean().item(),
                       fine_map_mean=out["dm_fine"].mean().item(),
                       changed_by_rectification=(warp_only != out["pred"]).float().mean().item())
        rows.append(row)
        print(json.dumps(row))
        last = out

    figure = out_dir / "clip.png"
    panels = [("frame", frames[-1].permute(1, 2, 0).numpy()), ("prediction", colorize(last["pred"][0], CITYSCAPES)),
              ("fine distortion map", crop(last["dm_fine"], size)[0, 0].numpy())]
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 2.4))
    for ax, (title, image) in zip(axes, panels):
        ax.imshow(image)
        ax.set_title(title)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(figure, dpi=100)
    plt.close(fig)
    report = {"frames": rows, "env": collect_env(), "args": vars(args)}
    atomic_write_json(report, out_dir / "report.json")
    print(json.dumps({"wall_s": round(time.perf_counter() - start, 2), "report": str(out_dir / "report.json"),
                      "figure": str(figure)}))


if __name__ == "__main__":
    main()
