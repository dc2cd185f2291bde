"""The evaluation protocol (engine/evaluate.py), tools/val.py end to end and tools/infer_video.py."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from engine.evaluate import (WindowEvaluator, evaluate_distances, parse_distances, shard_indices)
from model import build_evss
from model.blocks import upsample4
from model.fusion import crop

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_net():
    torch.manual_seed(0)
    return build_evss(11).eval()


def _frames(seed: int, t: int = 10, h: int = 32, w: int = 48) -> torch.Tensor:
    # smooth moving pattern so flows and predictions are not pure noise
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(1, 3, h // 4, w // 4 + 4, generator=g)
    base = torch.nn.functional.interpolate(base, size=(h, w + 16), mode="bilinear", align_corners=False)[0]
    return torch.stack([base[:, :, i:i + w] for i in range(t)]).contiguous()


class _Windows(torch.utils.data.Dataset):
    """Windows of one sliding clip (window i = frames i..i+T-1), optionally exposing paths."""

    num_classes = 11
    ignore_index = 11

    def __init__(self, clip: torch.Tensor, labels: torch.Tensor, length: int = 10, with_items: bool = True,
                 dense_labels: bool = False) -> None:
        self.clip, self.labels, self.length = clip, labels, length
        self.dense_labels = dense_labels
        n = clip.shape[0] - length + 1
        if with_items:
            from types import SimpleNamespace
            self.items = [SimpleNamespace(frames=tuple(f"f{j}" for j in range(i, i + length))) for i in range(n)]
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        sample = {"frames": self.clip[i:i + self.length], "label": self.labels[i + self.length - 1],
                  "id": f"w{i}", "gaps": [1] * (self.length - 1)}
        if self.dense_labels:
            sample["labels"] = self.labels[i:i + self.length]
        return sample


def test_parse_distances_and_shards():
    assert parse_distances("1,3") == [1, 3]
    assert parse_distances("1-9") == list(range(1, 10))
    assert parse_distances("original") == [3, 5, 7, 9]
    assert parse_distances([5, 1, 5]) == [1, 5]
    with pytest.raises(ValueError):
        parse_distances("-1")
    for n, world in ((0, 2), (7, 3), (10, 4), (3, 5)):
        seen = [i for r in range(world) for i in shard_indices(n, r, world)]
        assert seen == list(range(n))  # contiguous shards, every index exactly once


def test_window_matches_segment_clip(tiny_net):
    frames = _frames(0)
    window = WindowEvaluator(tiny_net, frames)
    with torch.no_grad():
        for d in (1, 4, 9):
            got = window.distance(d)
            ref = tiny_net.segment_clip([frames[j:j + 1] for j in range(9 - d, 10)])
            assert torch.equal(got["pred"], ref["pred"][0]), d
            plain = crop(upsample4(ref["warped"][-1]), (32, 48)).argmax(1)[0]
            assert torch.equal(got["pred_warp"], plain), d
        key = tiny_net.segment_clip([frames[9:10]])["pred"][0]
        assert torch.equal(window.distance(0)["pred"], key)
        assert torch.equal(window.keyframe_pred(), key)
    # flows were computed once per consecutive pair, CSRNet once per keyframe position
    assert sorted(window._flow) == list(range(1, 10))
    assert sorted(window._key) == [0, 5, 8, 9]
    with pytest.raises(ValueError):
        window.distance(10)


def test_evaluate_distances_schema_and_temporal(tiny_net):
    clip = _frames(1, t=12)
    with torch.no_grad():  # labels = the keyframe network's own predictions: d = 0 scores 1.0
        labels = torch.stack([tiny_net.segment_clip([clip[t:t + 1]])["pred"][0] for t in range(12)])
    labels[:, :2, :] = 11  # an ignored band
    ds = _Windows(clip, labels, dense_labels=False)
    seen = {}
    res = evaluate_distances(tiny_net, ds, [1, 3], "cpu", progress=False, temporal=True, flow_source="farneback",
                             keyframe_interval=4, vc_n=2, on_prediction=lambda i, k, p: seen.setdefault((i, k), p))
    assert res["num_samples"] == 3
    assert set(res["miou"]) == {"1", "3"} and set(res["miou_warp"]) == {"1", "3"}
    assert res["miou_keyframe"] == pytest.approx(1.0)
    assert all(0.0 <= v <= 1.0 for v in res["miou"].values())
    assert all(len(v) == 11 for v in res["iou_per_class"].values())
    assert all(v is None or 0 <= v <= 1 for v in res["iou_per_class"]["3"])
    assert all(isinstance(x, int) for row in res["confusion"]["3"] for x in row)
    # every labelled pixel (all but the ignored band) of the 3 windows is counted
    assert sum(map(sum, res["confusion"]["1"])) == 3 * (32 - 2) * 48
    json.dumps(res)  # JSON-ready
    assert ("w2", "d3") in seen and ("w0", "warp_d1") in seen and ("w1", "keyframe") in seen
    t = res["temporal"]
    assert t["flow_source"] == "opencv-farneback" and t["keyframe_interval"] == 4
    # the three windows chain into one clip of 12 frames: 11 pairs, each counted once
    assert t["evss"]["num_pairs"] == 11 and t["keyframe"]["num_pairs"] == 11
    # labelled frames 9, 10, 11 are consecutive: VC_2 has windows (9,10) [+ (10,11) dropped as last]
    assert t["keyframe"]["vc_windows"] == 1 and t["keyframe"]["vc"] == pytest.approx(1.0)
    assert t["keyframe"]["miou"] == pytest.approx(1.0)
    for name in ("evss", "keyframe"):
        for key in ("tc_etc", "tc_fb"):
            assert 0.0 <= t[name][key] <= 1.0

    # without frame paths every window is its own clip: 9 pairs per window
    res2 = evaluate_distances(tiny_net, _Windows(clip, labels, with_items=False, dense_labels=True), [1], "cpu",
                              progress=False, temporal=True, flow_source="dis", keyframe_interval=3, fb_check=False,
                              limit=1)
    assert res2["num_samples"] == 1
    assert res2["temporal"]["evss"]["num_pairs"] == 9 and res2["temporal"]["evss"]["tc_fb"] is None
    assert res2["temporal"]["keyframe"]["vc_windows"] == 10 - 8  # VC_8: dense labels on every window frame


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

    from dataset import build_dataset
    from model import load_checkpoint

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
    from dataset.synthetic import render_clip

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


def test_val_cityscapes_layout_full_resolution(shared_dir, make_weights, tmp_path):
    from tools import val

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

    from dataset import build_dataset
    from model import load_checkpoint

    sample = build_dataset("cityscapes", root, "val", "eval", length=10)[0]
    assert sample["frames"].shape == (10, 3, 1024, 2048)
    net = build_evss(19)
    load_checkpoint(net, ckpt)
    net.eval()
    ref = net.segment_clip([sample["frames"][j:j + 1] for j in range(6, 10)])["pred"][0]
    got = cv2.imread(str(out / "predictions" / "d3" / f"{sample['id']}.png"), cv2.IMREAD_UNCHANGED)
    assert np.array_equal(got, ref.numpy().astype(np.uint8))


def test_infer_video_file_and_folder(shared_dir, make_weights, tmp_path, capsys):
    from tools import infer_video

    folder = shared_dir / "data" / "camvid_segnet" / "val"
    if not folder.is_dir():
        pytest.skip(f"{folder} not found")
    frames = sorted(folder.glob("*.jpg"))[:6]
    video = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 15.0, (480, 360))
    for f in frames:
        writer.write(cv2.imread(str(f)))
    writer.release()
    ckpt = tmp_path / "camvid.pth"
    torch.save(make_weights.make_state_dict("camvid", 0), ckpt)

    out = tmp_path / "seg.mp4"
    rep = infer_video.main([str(video), "--checkpoint", str(ckpt), "--num-classes", "11", "--out", str(out),
                            "--keyframe-interval", "3", "--show-distortion", "--png-dir", str(tmp_path / "png"),
                            "--device", "cpu", "--no-progress", "--max-size", "240"])
    assert rep["frames"] == 6 and rep["keyframes"] == 2 and rep["size"] == [180, 240]
    assert "fps" in capsys.readouterr().out
    cap = cv2.VideoCapture(str(out))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 6
    assert (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))) == (480, 180)
    cap.release()
    pngs = sorted((tmp_path / "png").glob("*.png"))
    assert len(pngs) == 6 and cv2.imread(str(pngs[0])).shape == (180, 480, 3)

    out2 = tmp_path / "folder.mp4"
    rep = infer_video.main([str(folder), "--checkpoint", str(ckpt), "--num-classes", "11", "--out", str(out2),
                            "--keyframe-interval", "2", "--max-frames", "4", "--device", "cpu", "--no-progress",
                            "--max-size", "240", "--label-dir", str(tmp_path / "labels")])
    assert rep["frames"] == 4 and rep["keyframes"] == 2
    labels = sorted((tmp_path / "labels").glob("*.png"))
    assert len(labels) == 4 and cv2.imread(str(labels[0]), cv2.IMREAD_UNCHANGED).max() < 11
    assert out2.stat().st_size > 0
