"""tools/infer_video.py --device cpu|cuda on a folder of frames: every class map it writes is the
prediction of ``segment_clip`` from that frame's keyframe, computed on the CPU (the same on the CPU;
on CUDA, in full float32, wherever the two best logits are more than 1e-4 apart)."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from model import build_evss, load_checkpoint
from tests.devices import DEVICES, full_fp32
from tools import infer_video

MARGIN = {"cpu": 0.0, "cuda": 1e-4}


@pytest.mark.parametrize("device", DEVICES)
def test_infer_video_writes_the_clip_predictions(tmp_path, device):
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (6, 32, 48, 3), dtype=np.uint8)  # RGB
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, rgb in enumerate(frames):
        cv2.imwrite(str(folder / f"{i:03d}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    torch.manual_seed(3)
    ckpt = tmp_path / "evss.pth"
    torch.save(build_evss(19).state_dict(), ckpt)
    with full_fp32():  # --threads 1 holds for the reference below too (one process)
        report = infer_video.main([str(folder), "--checkpoint", str(ckpt), "--device", device, "-k", "3",
                                   "--out", str(tmp_path / "seg.mp4"), "--label-dir", str(tmp_path / "labels"),
                                   "--no-progress", "--threads", "1"])
    assert report["frames"] == 6 and report["keyframes"] == 2 and report["size"] == [32, 48]

    net = build_evss(19).eval()
    load_checkpoint(net, ckpt)
    clip = torch.from_numpy(frames).permute(0, 3, 1, 2).float().div(255)[:, None]
    for t in range(6):
        with torch.no_grad():
            ref = net.segment_clip(list(clip[3 * (t // 3):t + 1]))
        top2 = ref["logits"][..., :32, :48].topk(2, dim=1).values
        decided = (top2[:, 0] - top2[:, 1])[0] > MARGIN[device]
        written = torch.from_numpy(cv2.imread(str(tmp_path / "labels" / f"{t:06d}.png"), cv2.IMREAD_UNCHANGED))
        assert decided.float().mean() > 0.9
        assert torch.equal(written[decided].long(), ref["pred"][0][decided]), f"frame {t}"
