"""engine/flow_eval.py and tools/eval_flow.py: .flo reading, EPE, warping error, the Sintel sample."""
from __future__ import annotations

import json
import struct

import numpy as np
import pytest
import torch

from engine.flow_estimators import ModelFlow, ZeroFlow
from engine.flow_eval import (
    build_estimator,
    camvid_pairs,
    endpoint_error,
    load_sintel_sample,
    read_flo,
    warping_error,
    write_flo,
)


def _hand_written_flo(path, width, height, values):
    """Bytes written by hand (struct), not with write_flo: magic, width, height, (u, v) row-major."""
    payload = struct.pack("<f", 202021.25) + struct.pack("<ii", width, height) + struct.pack(f"<{len(values)}f", *values)
    path.write_bytes(payload)


def test_read_flo_hand_written(tmp_path):
    # 3 wide, 2 high; pixel (y, x) has u = 10*y + x, v = -(10*y + x) - 0.5
    values = []
    for y in range(2):
        for x in range(3):
            values += [10 * y + x, -(10 * y + x) - 0.5]
    path = tmp_path / "tiny.flo"
    _hand_written_flo(path, 3, 2, values)
    flow = read_flo(path)
    assert flow.shape == (2, 3, 2) and flow.dtype == np.float32
    assert flow[1, 2, 0] == 12 and flow[1, 2, 1] == -12.5 and flow[0, 1, 0] == 1
    # round trip through write_flo gives the same bytes
    write_flo(tmp_path / "again.flo", flow)
    assert (tmp_path / "again.flo").read_bytes() == path.read_bytes()


def test_read_flo_rejects_bad_files(tmp_path):
    bad = tmp_path / "bad.flo"
    bad.write_bytes(struct.pack("<f", 1.0) + struct.pack("<ii", 1, 1) + struct.pack("<2f", 0, 0))
    with pytest.raises(ValueError, match="not a .flo"):
        read_flo(bad)
    short = tmp_path / "short.flo"
    _hand_written_flo(short, 2, 2, [0.0] * 6)  # needs 8 values
    with pytest.raises(ValueError, match="truncated"):
        read_flo(short)


def test_epe_zero_flow_against_known_translation():
    gt = torch.zeros(1, 2, 5, 7)
    gt[:, 0], gt[:, 1] = 3.0, 4.0  # |(3, 4)| = 5
    zero = torch.zeros_like(gt)
    assert endpoint_error(zero, gt) == pytest.approx(5.0)
    assert endpoint_error(gt, gt) == 0.0
    # half the pixels exactly right, half off by (3, 4): the masks pick each half
    half = gt.clone()
    half[..., :, :3] = 0
    left = torch.zeros(5, 7, dtype=torch.bool)
    left[:, :3] = True
    assert endpoint_error(half, gt, left) == pytest.approx(5.0)
    assert endpoint_error(half, gt, ~left) == 0.0
    assert endpoint_error(half, gt) == pytest.approx(5.0 * 3 / 7)


def _translated_pair(dx: int, dy: int, h: int = 24, w: int = 32):
    """previous: random texture; current(y, x) = previous(clamp(y + dy), clamp(x + dx)) exactly."""
    g = torch.Generator().manual_seed(0)
    previous = torch.rand(1, 3, h, w, generator=g)
    ys = (torch.arange(h) + dy).clamp(0, h - 1)
    xs = (torch.arange(w) + dx).clamp(0, w - 1)
    current = previous[:, :, ys][:, :, :, xs]
    flow = torch.zeros(1, 2, h, w)
    flow[:, 0], flow[:, 1] = float(dx), float(dy)
    return previous, current, flow


def test_warping_error_exact_translation_is_zero_and_zero_flow_is_not():
    previous, current, flow = _translated_pair(3, -2)
    mask = torch.ones(1, 24, 32, dtype=torch.bool)
    exact = warping_error(previous, current, flow, mask)
    assert exact["l1"] == 0.0 and exact["mse"] == 0.0 and exact["psnr"] == float("inf")
    assert exact["l1_masked"] == 0.0 and exact["kept"] == 1.0
    none = warping_error(previous, current, ZeroFlow()(current, previous))
    assert none["l1"] > 0.1 and none["psnr"] < 15


def test_flownet_spec_loads_a_checkpoint_or_its_flownet_part(tmp_path):
    from model import FlowNetS, build_evss

    torch.manual_seed(0)
    net = FlowNetS().eval()
    torch.save({"model": net.state_dict()}, tmp_path / "final.pth")
    evss = build_evss(5)
    evss.flownet.load_state_dict(net.state_dict())
    torch.save({"model": evss.state_dict()}, tmp_path / "evss.pth")
    a, b = torch.rand(1, 3, 32, 48), torch.rand(1, 3, 32, 48)
    reference = ModelFlow(net)(a, b)
    stage = build_estimator(f"flownet:{tmp_path / 'final.pth'}")
    whole = build_estimator(f"flownet:{tmp_path / 'evss.pth'}=mine")
    assert stage.name == f"flownet-{tmp_path.name}" and whole.name == "mine"
    assert torch.equal(stage(a, b), reference) and torch.equal(whole(a, b), reference)
    assert build_estimator("dis-fast").name == "opencv-dis-fast" and build_estimator("zero").name == "zero"
    with pytest.raises(ValueError, match="unknown flow estimator"):
        build_estimator("raft")


def test_sintel_sample_loads(shared_dir):
    root = shared_dir / "data" / "sintel_sample"
    if not root.is_dir():
        pytest.skip(f"{root} not found")
    s = load_sintel_sample(root)
    assert s.frames[2].shape == (1, 3, 436, 1024) and s.flow.shape == (1, 2, 436, 1024)
    assert int(s.invalid.sum()) == 8
    assert float(s.occluded.float().mean()) == pytest.approx(0.0082, abs=0.0005)
    mag = s.flow.norm(dim=1)[0]
    assert float(mag.mean()) == pytest.approx(1.536, abs=2e-3)
    # the ground truth is I2(x) ≈ I3(x + F(x)): warping frame 3 with it beats no warping (README: 1.30 vs 5.45)
    noc = (~s.invalid & ~s.occluded)[None]
    warped = warping_error(s.frames[3], s.frames[2], s.flow, noc)["l1_masked"]
    unwarped = warping_error(s.frames[3], s.frames[2], torch.zeros_like(s.flow), noc)["l1_masked"]
    assert warped * 255 == pytest.approx(1.30, abs=0.05) and unwarped * 255 == pytest.approx(5.45, abs=0.05)
    # zero flow's EPE is the mean ground-truth magnitude
    assert endpoint_error(torch.zeros_like(s.flow), s.flow, ~s.invalid) == pytest.approx(1.536, abs=2e-3)


def test_camvid_val_pairs(shared_dir):
    root = shared_dir / "data" / "camvid_segnet"
    if not (root / "val").is_dir():
        pytest.skip(f"{root / 'val'} not found")
    pairs = camvid_pairs(root, "val")
    assert len(pairs) == 100 and pairs[0][0].name == "0016E5_07959.jpg" and pairs[0][1].name == "0016E5_07961.jpg"


def test_eval_flow_cli(shared_dir, tmp_path):
    from model import FlowNetS
    from tools import eval_flow

    sintel, camvid = shared_dir / "data" / "sintel_sample", shared_dir / "data" / "camvid_segnet"
    if not sintel.is_dir() or not (camvid / "val").is_dir():
        pytest.skip("sintel_sample or camvid_segnet/val not found")
    torch.manual_seed(0)
    ckpt = tmp_path / "final.pth"
    torch.save({"model": FlowNetS().state_dict()}, ckpt)
    out = tmp_path / "out"
    eval_flow.main(["zero", "dis", "--flownet", f"{ckpt}=net", "--limit", "1", "--out", str(out),
                    "--sintel", str(sintel), "--camvid", str(camvid)])
    result = json.loads((out / "flow_eval.json").read_text())
    assert result["order"] == ["zero", "opencv-dis-medium", "net"]
    assert result["sintel"]["estimators"]["opencv-dis-medium"]["epe_noc"] < 0.5   # DIS is good on this pair
    assert result["sintel"]["estimators"]["zero"]["epe_all"] == pytest.approx(1.536, abs=2e-3)
    cv = result["camvid"]["estimators"]
    assert cv["opencv-dis-medium"]["l1_all"] < cv["zero"]["l1_all"]
    assert "| net |" in (out / "flow_eval.md").read_text()
    assert build_estimator("farneback").name == "opencv-farneback"
