"""tools/val.py end to end: the CamVid SegNet layout (against segment_clip, predictions saved as PNGs) and
the Cityscapes layout at full resolution."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from dataset import build_dataset
from dataset.synthetic import render_clip
from model import build_evss, load_checkpoint
from tools import val

ROOT = Path(__file__).resolve().parents[2]


def _check_results_schema(res: dict, distances: list[int], num_classes: int) -> None:
    for key in ("miou", "miou_warp", "iou_per_class"):
        assert set(res[key]) == {str(d) for d in distances}, key
    for d in distances:
        assert 0.0 <= res["miou"][str(d)] <= 1.0 and 0.0 <= res["miou_warp"][str(d)] <= 1.0
        assert len(res["iou_per_class"][str(d)]) == num_classes
        assert all(v is None or 0.0 <= v <= 1.0 for v in res["iou_per_class"][str(d)])
    assert 0.0 <= res["miou_keyframe"] <= 1.0
    assert isinstance(res["num_samples"], int) and res["num_samples"] >= 1


def _check_outputs(out: Path) -> dict:
    for name in ("results.json", "results.md", "miou_vs_distance.png", "config.json", "env.json"):
        assert (out / name).is_file(), name
    assert "mIoU per keyframe distance" in (out / "results.md").read_text()
    assert json.loads((out / "config.json").read_text())["distances"]
    return json.loads((out / "results.json").read_text())


@pytest.mark.slow
def test_val_camvid_end_to_end(shared_dir, make_weights, tmp_path):
    root = shared_dir / "data" / "camvid_segnet"
    if not (root / "valannot").is_dir():
        pytest.skip(f"{root} not found")
    ckpt = tmp_path / "camvid.pth"
    torch.save(make_weights.make_state_dict("camvid", 0), ckpt)
    out = tmp_path / "val"
    cmd = [sys.executable, str(ROOT / "tools" / "val.py"), "--dataset", "camvid", "--data-root", str(root),
           "--split", "val", "--checkpoint", str(ckpt), "--distances", "1,3", "--device", "cpu",
           "--out", str(out), "--limit", "2", "--workers", "0", "--save-predictions", "--no-progress"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = _check_outputs(out)
    _check_results_schema(res, [1, 3], 11)
    assert res["num_samples"] == 2

    ds = build_dataset("camvid", root, "val", "eval", length=10, missing="skip")
    sample = ds[1]
    assert sample["frames"].shape[-2:] == (360, 480)
    net = build_evss(11)
    load_checkpoint(net, ckpt)
    net.eval()
    ref = net.segment_clip([sample["frames"][j:j + 1] for j in range(6, 10)])["pred"][0]
    got = cv2.imread(str(out / "predictions" / "d3" / f"{sample['id']}.png"), cv2.IMREAD_UNCHANGED)
    assert got is not None and got.shape == (360, 480)
    assert np.array_equal(got, ref.numpy().astype(np.uint8))


def _write_cityscapes_clip(root: Path, height: int = 1024, width: int = 2048) -> None:
    """One synthetic snippet in the official layout (frames 10..19, label on frame 19), rendered small and
    scaled up so the test stays quick."""
    clip = render_clip(7, 20, 128, 256, num_classes=19, occlusion=False)
    frames_dir = root / "leftImg8bit_sequence" / "val" / "synth"
    label_dir = root / "gtFine" / "val" / "synth"
    frames_dir.mkdir(parents=True)
    label_dir.mkdir(parents=True)
    for t in range(10, 20):
        image = cv2.resize(clip["frames"][t], (width, height), interpolation=cv2.INTER_LINEAR)
        cv2.imwrite(str(frames_dir / f"synth_000000_{t:06d}_leftImg8bit.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR),
                    [cv2.IMWRITE_PNG_COMPRESSION, 1])
    label = cv2.resize(clip["labels"][19], (width, height), interpolation=cv2.INTER_NEAREST)
    cv2.imwrite(str(label_dir / "synth_000000_000019_gtFine_labelTrainIds.png"), label)


@pytest.mark.slow
def test_val_cityscapes_layout_full_resolution(shared_dir, make_weights, tmp_path):
    root = tmp_path / "citys"
    _write_cityscapes_clip(root)
    ckpt = tmp_path / "citys.pth"
    torch.save(make_weights.make_state_dict("citys", 0), ckpt)
    out = tmp_path / "val"
    res = val.main(["--dataset", "cityscapes", "--data-root", str(root), "--checkpoint", str(ckpt),
                    "--distances", "1,3", "--device", "cpu", "--out", str(out), "--limit", "1", "--workers", "0",
                    "--save-predictions", "--no-progress", "--no-warp"])
    assert res["num_samples"] == 1
    saved = _check_outputs(out)
    assert set(saved["miou"]) == {"1", "3"} and len(saved["iou_per_class"]["3"]) == 19
    assert saved["miou_warp"] == {}

    sample = build_dataset("cityscapes", root, "val", "eval", length=10)[0]
    assert sample["frames"].shape == (10, 3, 1024, 2048)
    net = build_evss(19)
    load_checkpoint(net, ckpt)
    net.eval()
    ref = net.segment_clip([sample["frames"][j:j + 1] for j in range(6, 10)])["pred"][0]
    got = cv2.imread(str(out / "predictions" / "d3" / f"{sample['id']}.png"), cv2.IMREAD_UNCHANGED)
    assert np.array_equal(got, ref.numpy().astype(np.uint8))


def _val_args(root: Path, out: Path, ckpt: Path, *extra: str) -> list[str]:
    return ["--dataset", "cityscapes", "--data-root", str(root), "--checkpoint", str(ckpt), "--distances", "1",
            "--window", "2", "--device", "cpu", "--out", str(out), "--workers", "0", "--no-progress", "--no-warp",
            *extra]


@pytest.fixture
def two_snippets(tmp_path) -> tuple[Path, Path]:
    """A Cityscapes tree of two tiny labelled snippets and a random-weight EVSS checkpoint."""
    from dataset.synthetic import write_cityscapes_layout

    root = tmp_path / "citys"
    write_cityscapes_layout(root, "val", num_clips=2, height=32, width=64, num_frames=20)
    (root / "val.txt").unlink()  # evaluate the scanned tree
    ckpt = tmp_path / "evss.pth"
    torch.manual_seed(0)
    torch.save(build_evss(19).state_dict(), ckpt)
    return root, ckpt


def test_val_prints_and_records_the_sample_counts(two_snippets, tmp_path, capsys):
    root, ckpt = two_snippets
    res = val.main(_val_args(root, tmp_path / "val", ckpt))
    assert "[val] 2 of 2 labelled frames evaluated\n" in capsys.readouterr().out
    saved = json.loads((tmp_path / "val" / "results.json").read_text())
    assert (saved["samples_expected"], saved["samples_used"]) == (2, 2) == (res["samples_expected"], res["num_samples"])

    val.main(_val_args(root, tmp_path / "limited", ckpt, "--limit", "1"))
    assert "[val] 1 of 2 labelled frames evaluated (1 skipped: left out by --limit)" in capsys.readouterr().out


def test_val_missing_label_is_an_error_unless_allowed(two_snippets, tmp_path, capsys):
    from model.errors import run_cli

    root, ckpt = two_snippets
    (root / "gtFine/val/synthburg/synthburg_000000_000019_gtFine_labelTrainIds.png").unlink()
    with pytest.raises(SystemExit) as exit_info:
        run_cli(val.main, _val_args(root, tmp_path / "val", ckpt))
    assert exit_info.value.code == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "synthburg_000000_000019_gtFine_labelTrainIds.png" in err[0]
    assert "tools/prepare_cityscapes.py" in err[0] and "--allow-missing" in err[0]

    with pytest.warns(UserWarning, match=r"left out 1 labelled frame\(s\) .*synthburg_000000_000019"):
        res = val.main(_val_args(root, tmp_path / "val", ckpt, "--allow-missing"))
    assert "[val] 1 of 2 labelled frames evaluated (1 skipped: label missing)" in capsys.readouterr().out
    assert (res["samples_expected"], res["samples_used"], res["num_samples"]) == (2, 1, 1)
    assert json.loads((tmp_path / "val" / "results.json").read_text())["samples_dropped"] == {"label missing": 1}
