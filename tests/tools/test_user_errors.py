"""Every kind of bad input, through the real command lines: one line ``error: ...`` naming what is at
fault, the exit status of its class (model/errors.py), and no traceback unless ``--debug``."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from dataset.synthetic.export import write_cityscapes_layout
from model import build_evss

ROOT = Path(__file__).resolve().parents[2]
TINY_TRAIN = ["--stage", "csrnet", "device=cpu", "data.synthetic.height=32", "data.synthetic.width=64",
              "data.synthetic.train_clips=1", "data.synthetic.val_clips=0", "data.synthetic.clip_len=5",
              "data.crop=null", "data.scale=null", "model.pretrained_backbone=false", "train.batch_size=2",
              "train.workers=0", "train.progress=false", "train.tb_images=0"]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """The bad inputs: text and image files posing as checkpoints, an 11-class checkpoint, frames of
    two sizes, a Cityscapes tree missing one trainIds label, a list with a broken line, a label with
    class ids out of range."""
    tmp = tmp_path_factory.mktemp("bad")
    out = {"text": tmp / "notes.pth", "image": tmp / "photo.pth", "classes11": tmp / "camvid.pth",
           "frames": tmp / "frames", "cityscapes": tmp / "cityscapes", "list": tmp / "train.txt",
           "labels": tmp / "labels", "file": tmp / "a_file"}
    out["text"].write_text("these are my notes, not weights\n")
    cv2.imwrite(str(tmp / "photo.png"), np.zeros((8, 8, 3), np.uint8))
    (tmp / "photo.png").rename(out["image"])
    torch.save({"model": build_evss(11).state_dict()}, out["classes11"])
    out["frames"].mkdir()
    for i, (h, w) in enumerate([(32, 48), (32, 48), (40, 64)]):
        cv2.imwrite(str(out["frames"] / f"{i:03d}.png"), np.full((h, w, 3), 100, np.uint8))
    write_cityscapes_layout(out["cityscapes"], "val", num_clips=2, height=32, width=64, num_frames=20)
    out["missing_label"] = sorted((out["cityscapes"] / "gtFine" / "val").rglob("*_gtFine_labelTrainIds.png"))[1]
    out["missing_label"].unlink()
    write_cityscapes_layout(out["labels"], "train", num_clips=1, height=32, width=64, num_frames=20)
    label = next((out["labels"] / "gtFine" / "train").rglob("*_gtFine_labelTrainIds.png"))
    cv2.imwrite(str(label), np.full((32, 64), 40, np.uint8))
    out["bad_label"] = label
    out["list"].write_text("leftImg8bit_sequence/val/a.png gtFine/val/a.png\nonly-one-column\n")
    out["file"].write_text("x")
    return out


def cases(f: dict[str, Path]) -> list[tuple[str, list[str], int, str]]:
    """(bad input, command line, exit status, the start of the message after ``error: ``)."""
    infer = ["tools.infer_video", str(f["frames"]), "--no-progress", "--max-frames", "2"]
    return [
        ("unknown config key", ["tools.train", *TINY_TRAIN, "optim.lrr=1"], 2,
         "unknown config key 'optim.lrr' in command line (did you mean 'optim.lr'"),
        ("negative learning rate", ["tools.train", *TINY_TRAIN, "optim.lr=-1"], 2,
         "config key 'optim.lr' must be a number > 0, got -1.0"),
        ("fractional iteration count", ["tools.train", *TINY_TRAIN, "train.iters=5.5"], 2,
         "config key 'train.iters' must be an integer >= 1 or null, got 5.5"),
        ("bad command-line value", [*infer, "--keyframe-interval", "0"], 2,
         "--schedule fixed: fixed schedule: k must be an integer >= 1, got 0"),
        ("label file missing in a scanned tree",
         ["tools.val", "--dataset", "cityscapes", "--data-root", str(f["cityscapes"]), "--checkpoint", "x.pth",
          "--window", "2", "--distances", "1"], 3, f"{f['missing_label']}: label does not exist"),
        ("list line that does not parse",
         ["tools.val", "--dataset", "cityscapes", "--data-root", str(f["cityscapes"]), "--list", str(f["list"]),
          "--checkpoint", "x.pth", "--window", "2", "--distances", "1"], 3, f"{f['list']}:2:"),
        ("label values out of range",
         ["tools.train", *TINY_TRAIN, "train.iters=1", "train.batch_size=1", f"out_dir={f['labels']}/run",
          "data.name=cityscapes",
          f"data.root={f['labels']}", "data.val_split=null", "data.offsets=[-1]"], 3, f"{f['bad_label']}: "),
        ("frames of another size", infer + ["--max-frames", "3"], 3, f"{f['frames'] / '002.png'} is 40x64"),
        ("input that does not exist", ["tools.infer_video", str(f["frames"] / "nope.mp4")], 3,
         f"{f['frames'] / 'nope.mp4'}: no such video file or frame folder"),
        ("checkpoint that does not exist", [*infer, "--checkpoint", "missing.pth"], 4,
         "checkpoint not found: missing.pth"),
        ("text file as checkpoint", [*infer, "--checkpoint", str(f["text"])], 4,
         f"{f['text']}: not a PyTorch checkpoint: text file"),
        ("image as checkpoint", [*infer, "--checkpoint", str(f["image"])], 4,
         f"{f['image']}: not a PyTorch checkpoint: PNG image"),
        ("checkpoint of another class count", [*infer, "--checkpoint", str(f["classes11"])], 4,
         f"checkpoint {f['classes11']} does not fit EVSS: wrong shape"),
        ("non-finite loss", ["tools.train", *TINY_TRAIN, "train.iters=4", f"out_dir={f['file'].parent}/nan",
                             "optim.lr=1e30", "optim.schedule=constant"], 5,
         "stage csrnet: non-finite loss (nan on rank 0) at iteration 2"),
        ("output folder that cannot be created", ["tools.train", *TINY_TRAIN, f"out_dir={f['file']}/run"], 7,
         f"out_dir {f['file']}/run: cannot create the run folder (Not a directory)"),
    ]


CASE_NAMES = [case[0] for case in cases({k: Path(k) for k in ("text", "image", "classes11", "frames", "cityscapes",
                                                               "list", "labels", "file", "missing_label",
                                                               "bad_label")})]


def run_tool(argv: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *argv], cwd=ROOT, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("name", CASE_NAMES)
def test_bad_input_is_one_line_with_its_exit_status(files, name):
    _, argv, status, message = next(case for case in cases(files) if case[0] == name)
    proc = run_tool(argv)
    last = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else ""
    assert proc.returncode == status, proc.stderr[-2000:]
    assert last.startswith("error: " + message), last
    assert "Traceback" not in proc.stderr


def test_class_mismatch_suggests_num_classes(files):
    proc = run_tool(["tools.infer_video", str(files["frames"]), "--no-progress", "--max-frames", "1",
                     "--checkpoint", str(files["classes11"])])
    assert proc.returncode == 4
    assert proc.stderr.strip().endswith("(the checkpoint predicts 11 classes and the model 19: pass --num-classes 11, "
                                        "or data.num_classes=11 in a config)")


def test_debug_keeps_the_traceback(files):
    proc = run_tool(["tools.infer_video", str(files["frames"]), "--no-progress", "--checkpoint", str(files["text"]),
                     "--debug"])
    assert proc.returncode == 1
    assert "Traceback" in proc.stderr and "CheckpointError: " in proc.stderr
