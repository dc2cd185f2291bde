"""Segment a video (file or folder of frames) with EVSS and write the segmentation blended over it.

    python -m tools.infer_video INPUT --checkpoint FILE --out out.mp4 [--keyframe-interval 5]
        [--schedule fixed|adaptive|budget] [--threshold T] [--budget F] [--show-distortion]
        [--png-dir DIR] [--max-size 1024] [--num-classes 19] [--device cuda]

INPUT is a video file OpenCV can read (.mp4, .avi, ...) or a folder of images (sorted by name,
numbers compared as numbers). No labels are needed. Frames are streamed one at a time through
``net.stream()`` (the frames between keyframes propagated and corrected), so memory does not grow
with the video's length. Keyframes come every k frames (``--schedule fixed``), when the predicted
distortion of the propagated frame passes ``--threshold`` (``--schedule adaptive``, at most every
``--max-interval`` frames), or at a target fraction spent where the distortion is highest
(``--schedule budget --budget F``); model/schedule.py. Each output frame says whether it is a
keyframe (red frame, "KEY") and the distortion statistic the schedule read. The output video (mp4v) shows the colourised
segmentation blended over each frame, and with --show-distortion the fine distortion map beside
it (keyframes: black). --png-dir also writes each output frame as PNG (and --label-dir the raw
class maps). The frames per second of the run are printed at the end. Every frame must have the
first frame's size (an error names the frame and both sizes) unless --resize-mismatched, which
resizes such frames to the first frame's size, says so once on stderr and counts them in the summary
(``resized_frames``); resizing every frame to --size / --max-size is separate and always done.
"""
from __future__ import annotations

import argparse
import sys
import time
import warnings
from itertools import islice
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

from dataset.errors import DatasetError
from dataset.labels import CAMVID, CITYSCAPES, colorize
from dataset.video_reader import VideoFrames, target_size
from engine.config import ConfigError
from engine.malloc import retain_freed_memory
from engine.visualize import distortion_image, mark_keyframe, overlay
from model import Adaptive, Budget, Fixed, KeyframeSchedule, build_evss, load_checkpoint
from model.schedule import SIGNALS
from model.errors import WriteError, run_cli


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("input", help="video file or folder of frames")
    p.add_argument("--out", default="runs/infer/segmentation.mp4", help="output video (mp4v)")
    p.add_argument("--checkpoint", help="EVSS checkpoint (released or project); random weights if absent")
    p.add_argument("--num-classes", type=int, default=19, help="19 (Cityscapes) or 11 (CamVid)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--keyframe-interval", "-k", type=int, default=5, help="a keyframe every k frames (fixed)")
    p.add_argument("--schedule", choices=("fixed", "adaptive", "budget"), default="fixed",
                   help="how keyframes are chosen (model/schedule.py)")
    p.add_argument("--threshold", type=float, default=0.3,
                   help="adaptive: a keyframe when the distortion statistic passes this")
    p.add_argument("--budget", type=float, default=0.2, help="budget: the target keyframe fraction")
    p.add_argument("--signal", choices=sorted(SIGNALS), default="mean",
                   help="adaptive/budget: the statistic of the predicted distortion map")
    p.add_argument("--max-interval", type=int, default=30, help="adaptive: a keyframe at least this often")
    p.add_argument("--min-interval", type=int, default=1, help="adaptive: keyframes at least this far apart")
    p.add_argument("--wf", type=float, default=None, help="coarse distortion-map weight (default: the model's)")
    p.add_argument("--max-size", type=int, default=None, help="resize so the longer side is at most this")
    p.add_argument("--size", type=int, nargs=2, metavar=("H", "W"), help="resize every frame to H×W")
    p.add_argument("--resize-mismatched", action="store_true",
                   help="resize frames whose size differs from the first frame's to its size (else an error)")
    p.add_argument("--alpha", type=float, default=0.5, help="opacity of the segmentation overlay")
    p.add_argument("--show-distortion", action="store_true", help="put the fine distortion map beside the overlay")
    p.add_argument("--png-dir", help="also write every output frame as a PNG here")
    p.add_argument("--label-dir", help="also write every class map as an 8-bit PNG here")
    p.add_argument("--fps", type=float, help="output frame rate (default: the video's, 15 for folders)")
    p.add_argument("--max-frames", type=int, help="stop after this many frames")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--no-progress", action="store_true")
    return p


def build_schedule(args: argparse.Namespace) -> KeyframeSchedule:
    """The keyframe schedule of the command line."""
    try:
        if args.schedule == "adaptive":
            return Adaptive(args.threshold, args.max_interval, args.min_interval, args.signal)
        if args.schedule == "budget":
            return Budget(args.budget, args.signal)
        return Fixed(args.keyframe_interval)
    except ValueError as err:
        raise ConfigError(f"--schedule {args.schedule}: {err}") from None


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    schedule = build_schedule(args)
    classes = {19: CITYSCAPES, 11: CAMVID}.get(args.num_classes)
    if classes is None:
        raise ConfigError("--num-classes must be 19 (Cityscapes colours) or 11 (CamVid colours)")
    device = torch.device(args.device)
    if device.type == "cpu":  # reuse each frame's large tensors instead of page-faulting them in again
        retain_freed_memory()
    net = build_evss(args.num_classes)
    if args.checkpoint:
        load_checkpoint(net, args.checkpoint)
    else:
        warnings.warn("no --checkpoint: the network has random weights")
        print("[infer] WARNING: no --checkpoint given, the network has random weights", file=sys.stderr)
    net.to(device).eval()

    source = VideoFrames(args.input, args.fps, resize_mismatched=args.resize_mismatched)
    out_path = Path(args.out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    png_dir = Path(args.png_dir) if args.png_dir else None
    label_dir = Path(args.label_dir) if args.label_dir else None
    for folder in (png_dir, label_dir):
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True)

    limits = [n for n in (source.count, args.max_frames) if n]
    total = min(limits) if limits else None
    bar = None
    if not args.no_progress:
        bar = tqdm(total=total, desc="infer", unit="frame", dynamic_ncols=True)

    stream = net.stream(args.wf, schedule=schedule)
    writer = None
    size = None
    frames = keyframes = 0
    model_seconds = 0.0
    start = time.perf_counter()
    try:
        for bgr in islice(source, args.max_frames):  # no frame past --max-frames is read
            if size is None:
                size = target_size(bgr.shape[0], bgr.shape[1], args.max_size,
                                   tuple(args.size) if args.size else None)
            if bgr.shape[:2] != size:
                bgr = cv2.resize(bgr, (size[1], size[0]), interpolation=cv2.INTER_AREA)
            rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            tensor = torch.from_numpy(rgb).to(device).permute(2, 0, 1).unsqueeze(0).float().div_(255.0)
            t0 = time.perf_counter()
            out = stream.step(tensor)
            is_key = bool(out["keyframe"])
            pred = out["pred"][0].to("cpu")
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            model_seconds += time.perf_counter() - t0
            pred_np = pred.numpy()
            picture = mark_keyframe(overlay(rgb, colorize(pred_np, classes), args.alpha), is_key,
                                    out.get("distortion"))
            if args.show_distortion:
                picture = np.concatenate([picture, distortion_image(out.get("dm_fine"), *size)], axis=1)
            picture_bgr = cv2.cvtColor(picture, cv2.COLOR_RGB2BGR)
            if writer is None:
                writer = cv2.VideoWriter(str(out_path), cv2.VideoWriter_fourcc(*"mp4v"), float(source.fps),
                                         (picture_bgr.shape[1], picture_bgr.shape[0]))
                if not writer.isOpened():
                    raise WriteError(f"{out_path}: OpenCV cannot write an mp4v video here")
            writer.write(picture_bgr)
            if png_dir is not None:
                cv2.imwrite(str(png_dir / f"{frames:06d}.png"), picture_bgr)
            if label_dir is not None:
                cv2.imwrite(str(label_dir / f"{frames:06d}.png"), pred_np.astype(np.uint8))
            frames += 1
            keyframes += int(is_key)
            if bar is not None:
                bar.update(1)
    finally:
        if writer is not None:
            writer.release()
        if bar is not None:
            bar.close()
    seconds = time.perf_counter() - start
    if frames == 0:
        raise DatasetError(f"{args.input}: no frames read")
    report = {"frames": frames, "keyframes": keyframes, "keyframe_fraction": keyframes / frames,
              "schedule": schedule.describe(), "size": list(size), "seconds": seconds,
              "fps": frames / seconds, "model_fps": frames / model_seconds if model_seconds else None,
              "output": str(out_path), "resized_frames": source.resized}
    resized = f", {source.resized} of another size resized to the first's" if args.resize_mismatched else ""
    print(f"[infer] {frames} frames ({keyframes} keyframes, {schedule.describe()}{resized}) at "
          f"{size[0]}×{size[1]} on {device}: {report['fps']:.2f} fps overall, {report['model_fps']:.2f} fps model "
          f"only -> {out_path}")
    return report


if __name__ == "__main__":
    run_cli(main)
