"""Tests for engine/metrics.py and engine/flow_estimators.py (hand-computed expectations)."""

import math
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from engine.metrics import (  # noqa: E402
    ConfusionMatrix,
    TemporalConsistency,
    VideoConsistency,
    fb_consistency_mask,
    flow_target_in_frame,
    video_consistency,
    warp_labels,
)
from engine.flow_estimators import FlowEstimator, ModelFlow, OpenCVFlow  # noqa: E402


def _fallback_warp(features, flow):
    """Test-only stand-in for model.warp.warp: bilinear, border clamping, pixel flow."""
    b, _, h, w = flow.shape
    ys, xs = torch.meshgrid(torch.arange(h, dtype=flow.dtype), torch.arange(w, dtype=flow.dtype),
                            indexing="ij")
    gx = (xs + flow[:, 0]) / max(w - 1, 1) * 2 - 1
    gy = (ys + flow[:, 1]) / max(h - 1, 1) * 2 - 1
    grid = torch.stack([gx, gy], dim=-1)
    return F.grid_sample(features, grid, mode="bilinear", padding_mode="border", align_corners=True)


try:  # the project's warp when it exists, otherwise the local fallback
    from model.warp import warp as WARP  # noqa: N812
except ImportError:
    WARP = _fallback_warp


def t(rows):
    return torch.tensor(rows, dtype=torch.int64)


def const_flow(n, h, w, dx, dy=0.0):
    f = torch.zeros(n, 2, h, w)
    f[:, 0] = dx
    f[:, 1] = dy
    return f


# ----------------------------------------------------------------------------------------------
# ConfusionMatrix
# ----------------------------------------------------------------------------------------------
LABEL = [[0, 0, 1, 255],
         [0, 1, 1, 1],
         [255, 0, 1, 0]]
PRED = [[0, 1, 1, 2],
        [0, 0, 1, 1],
        [2, 0, 1, 1]]
# labelled pixels (row-major): (l, p) = (0,0) (0,1) (1,1) | (0,0) (1,0) (1,1) (1,1) | (0,0) (1,1) (0,1)
# class 2 never occurs in the labels and is predicted only on ignored pixels -> empty union.
EXPECTED = [[3, 2, 0],
            [1, 4, 0],
            [0, 0, 0]]


def test_confusion_matrix_hand_computed():
    cm = ConfusionMatrix(3, ignore_index=255)
    cm.update(t(PRED), t(LABEL))
    assert cm.matrix.dtype == torch.int64
    assert cm.matrix.tolist() == EXPECTED
    iou = cm.iou()
    assert iou[0].item() == pytest.approx(3 / 6)          # 3 / (5 + 4 - 3)
    assert iou[1].item() == pytest.approx(4 / 7)          # 4 / (5 + 6 - 4)
    assert math.isnan(iou[2].item())
    assert cm.miou() == pytest.approx((3 / 6 + 4 / 7) / 2)  # = 15/28, class 2 excluded
    assert cm.pixel_accuracy() == pytest.approx(7 / 10)
    s = cm.summary()
    assert s["iou"][2] is None and s["num_pixels"] == 10


def test_confusion_matrix_accumulates_int64_and_batches():
    cm = ConfusionMatrix(3, ignore_index=255)
    batch_p = torch.stack([t(PRED), t(PRED)]).to(torch.uint8)
    batch_l = torch.stack([t(LABEL), t(LABEL)]).to(torch.uint8)
    cm.update(batch_p, batch_l)
    cm.update(t(PRED).to(torch.int32), t(LABEL).to(torch.int32))
    assert cm.matrix.dtype == torch.int64
    assert cm.matrix.tolist() == (torch.tensor(EXPECTED) * 3).tolist()
    assert cm.miou() == pytest.approx(15 / 28)


def test_confusion_matrix_errors():
    cm = ConfusionMatrix(3, ignore_index=255)
    with pytest.raises(ValueError) as e:
        cm.update(torch.zeros(2, 3, 4, dtype=torch.long), torch.zeros(2, 4, 3, dtype=torch.long))
    assert "(2, 3, 4)" in str(e.value) and "(2, 4, 3)" in str(e.value)
    with pytest.raises(ValueError, match="label values"):
        cm.update(t([[0, 1]]), t([[0, 3]]))
    with pytest.raises(ValueError, match="pred values"):
        cm.update(t([[0, 7]]), t([[0, 1]]))
    with pytest.raises(TypeError, match="integer"):
        cm.update(torch.zeros(2, 2), t([[0, 1], [1, 0]]))
    assert cm.total == 0 and math.isnan(cm.miou())


def test_confusion_matrix_state_dict_and_merge():
    a = ConfusionMatrix(3, ignore_index=255).update(t(PRED), t(LABEL))
    b = ConfusionMatrix.from_state_dict(a.state_dict())
    assert b.matrix.tolist() == EXPECTED
    b.merge(a).merge(a.state_dict())
    b += a.matrix
    assert b.matrix.tolist() == (torch.tensor(EXPECTED) * 4).tolist()
    with pytest.raises(ValueError):
        b.merge(ConfusionMatrix(4, ignore_index=255))


def _dist_worker(rank, world, init_file, out_dir):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        g = torch.Generator().manual_seed(100 + rank)
        pred = torch.randint(0, 5, (3, 16, 16), generator=g)
        label = torch.randint(0, 6, (3, 16, 16), generator=g)
        label[label == 5] = 255
        cm = ConfusionMatrix(5, ignore_index=255).update(pred, label)
        vc = VideoConsistency(n=2).update(pred, label.clamp_max(4))
        cm.all_reduce()
        vc.all_reduce()
        torch.save({"cm": cm.matrix, "vc": vc.state_dict()}, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_all_reduce_two_process_gloo(tmp_path):
    import torch.multiprocessing as mp

    world = 2
    mp.spawn(_dist_worker, args=(world, str(tmp_path / "init"), str(tmp_path)), nprocs=world, join=True)
    ref = ConfusionMatrix(5, ignore_index=255)
    ref_vc = VideoConsistency(n=2)
    for rank in range(world):
        g = torch.Generator().manual_seed(100 + rank)
        pred = torch.randint(0, 5, (3, 16, 16), generator=g)
        label = torch.randint(0, 6, (3, 16, 16), generator=g)
        label[label == 5] = 255
        ref.update(pred, label)
        ref_vc.merge(VideoConsistency(n=2).update(pred, label.clamp_max(4)))
    for rank in range(world):
        got = torch.load(tmp_path / f"rank{rank}.pt")
        assert got["cm"].dtype == torch.int64
        assert torch.equal(got["cm"], ref.matrix)
        assert torch.allclose(got["vc"]["sums"], ref_vc.state_dict()["sums"])
        assert torch.equal(got["vc"]["windows"], ref_vc.state_dict()["windows"])
    assert ConfusionMatrix(5).all_reduce().total == 0  # no process group: no-op


# ----------------------------------------------------------------------------------------------
# label warping and temporal consistency
# ----------------------------------------------------------------------------------------------
def test_warp_labels_rounding_and_out_of_frame():
    lab = t([[10, 11, 12, 13]])
    f = const_flow(1, 1, 4, 1.5)[0]                   # 1.5 rounds half up to 2
    assert warp_labels(lab, f).tolist() == [[12, 13, 13, 13]]
    assert warp_labels(lab, f, fill_value=-1).tolist() == [[12, 13, -1, -1]]
    f = const_flow(1, 1, 4, -0.6)[0]                  # x - 0.6 rounds to x - 1
    assert warp_labels(lab, f, fill_value=-1).tolist() == [[-1, 10, 11, 12]]
    f = const_flow(1, 1, 4, 1.49)[0]
    assert warp_labels(lab, f).tolist() == [[11, 12, 13, 13]]
    f[0, 0, 1] = float("nan")
    assert flow_target_in_frame(f).tolist() == [[[True, False, True, False]]]


def test_tc_shift_by_flow_is_one():
    g = torch.Generator().manual_seed(0)
    p0 = torch.randint(0, 4, (1, 6, 8), generator=g)
    p1 = torch.zeros_like(p0)
    p1[..., 2:] = p0[..., :-2]                       # content moves 2 px to the right
    tc = TemporalConsistency(4, flow_source="hand-made", warp_fn=WARP)
    tc.update(p0, p1, const_flow(1, 6, 8, 2.0))      # flow_t->t+1: x of frame t is at x+2 in t+1
    r = tc.compute()
    assert r["tc_etc"] == pytest.approx(1.0)
    assert r["in_frame_fraction"] == pytest.approx(6 / 8)
    assert r["tc_fb"] is None and r["flow_source"] == "hand-made"


STRIPES_T = [[0, 0, 1, 1, 2, 2]] * 2
STRIPES_T1 = [[0, 0, 0, 0, 1, 1]] * 2                # shifted right by 2, class 0 enters on the left


def test_tc_wrong_flow_hand_computed():
    tc = TemporalConsistency(3, warp_fn=WARP)
    tc.update(t(STRIPES_T), t(STRIPES_T1), const_flow(1, 2, 6, 0.0)[0])  # wrong: zero flow
    # rows P_t, cols warped P_t+1: P0->Q0 x4, P1->Q0 x4, P2->Q1 x4
    assert tc.cm_etc.matrix.tolist() == [[4, 0, 0], [4, 0, 0], [0, 4, 0]]
    # IoU0 = 4/(4+8-4) = 1/2, IoU1 = 0/(4+4) = 0, IoU2 = 0/(4+0) = 0
    assert tc.compute()["tc_etc"] == pytest.approx(1 / 6)


def test_tc_right_flow_out_of_frame_modes():
    tc = TemporalConsistency(3, warp_fn=WARP)
    tc.update(t(STRIPES_T), t(STRIPES_T1), const_flow(1, 2, 6, 2.0)[0])
    assert tc.cm_etc.matrix.tolist() == [[4, 0, 0], [0, 4, 0], [0, 0, 0]]
    assert tc.compute()["tc_etc"] == pytest.approx(1.0)   # class 2 left the frame: NaN, excluded
    tc = TemporalConsistency(3, out_of_frame="clamp", warp_fn=WARP)
    tc.update(t(STRIPES_T), t(STRIPES_T1), const_flow(1, 2, 6, 2.0)[0])
    assert tc.cm_etc.matrix.tolist() == [[4, 0, 0], [0, 4, 0], [0, 4, 0]]
    assert tc.compute()["tc_etc"] == pytest.approx((1 + 0.5 + 0) / 3)


# frame t+1 has an occluder in columns 4..5 whose backward flow is 0 instead of -2
W_F = const_flow(1, 3, 8, 2.0)
W_B = const_flow(1, 3, 8, -2.0)
W_B[:, 0, :, 4:6] = 0.0
P_T = t([[0, 1, 2, 0, 1, 2, 0, 1]] * 3)
P_T1 = t([[2, 2, 0, 1, 1, 1, 1, 2]] * 3)              # P_t shifted by 2, occluder class 1 at 4..5


def test_fb_mask_marks_occluded_band():
    valid = fb_consistency_mask(W_F, W_B, warp_fn=WARP)
    # x -> x+2: x in {2, 3} lands on the band (|2+0|^2 = 4 >= 0.01*4 + 0.5), x in {6, 7} leaves
    expected = torch.tensor([True, True, False, False, True, True, False, False]).expand(1, 3, 8)
    assert torch.equal(valid, expected)


def test_tc_fb_hand_computed():
    tc = TemporalConsistency(3, flow_source="hand-made", warp_fn=WARP)
    tc.update(P_T, P_T1, W_F[0], W_B[0])
    r = tc.compute()
    # ETC on x = 0..5: (P,Q) = (0,0) (1,1) (2,1) (0,1) (1,1) (2,2) per row -> M = [[1,1,0],[0,2,0],[0,1,1]]*3
    assert tc.cm_etc.matrix.tolist() == [[3, 3, 0], [0, 6, 0], [0, 3, 3]]
    assert r["tc_etc"] == pytest.approx(0.5)           # IoU = 1/2 for every class
    assert r["tc_fb"] == pytest.approx(1.0)            # the mismatches are exactly the occluded band
    assert r["fb_valid_fraction"] == pytest.approx(0.5)
    assert r["in_frame_fraction"] == pytest.approx(0.75)


class _MarkedFlow(FlowEstimator):
    """Returns W_F for (frame_t, frame_t+1) and W_B for (frame_t+1, frame_t); frames carry t/10."""

    name = "marked"

    def estimate(self, current, previous):
        return (W_F if current.mean() < previous.mean() else W_B).expand(current.shape[0], 2, 3, 8)


def test_tc_streaming_push_matches_update():
    tc = TemporalConsistency(3, flow_estimator=_MarkedFlow(), warp_fn=WARP)
    frames = [torch.full((1, 3, 3, 8), 0.1), torch.full((1, 3, 3, 8), 0.2)]
    tc.push(P_T, frames[0]).push(P_T1, frames[1])
    tc.new_clip().push(P_T, frames[0]).push(P_T1, frames[1])
    r = tc.compute()
    assert r["num_pairs"] == 2 and r["flow_source"] == "marked"
    assert r["tc_etc"] == pytest.approx(0.5) and r["tc_fb"] == pytest.approx(1.0)
    other = TemporalConsistency(3, warp_fn=WARP).merge(tc.state_dict())
    assert other.compute()["tc_etc"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="flow_fwd"):
        TemporalConsistency(3).push(P_T).push(P_T1)


# ----------------------------------------------------------------------------------------------
# VSPW video consistency
# ----------------------------------------------------------------------------------------------
# 2×2 maps, 5 frames; pixel-wise time series (p0, p1 / p2, p3)
GT_SEQ = [[0, 0, 0, 0, 0], [1, 1, 1, 1, 2], [1, 1, 2, 2, 2], [255, 255, 255, 0, 0]]
PR_SEQ = [[0, 0, 0, 0, 0], [2, 2, 2, 2, 2], [1, 1, 1, 2, 2], [0, 1, 0, 0, 0]]


def _frames(seq):
    return torch.tensor(seq, dtype=torch.int64).T.reshape(5, 2, 2)


def test_vc_hand_computed():
    gt, pr = _frames(GT_SEQ), _frames(PR_SEQ)
    # official: windows [0,1,2] and [1,2,3] (frame 4 only closes the last one)
    # w0: A={p0,p1,p3}, B={p0,p1,p2} -> 2/3 (strict: only p0 correct -> 1/3)
    # w1: A={p0,p1},    B={p0,p1}    -> 1   (strict 1/2)
    r = video_consistency(pr, gt, n=3)
    assert r["num_windows"] == 2
    assert r["vc"] == pytest.approx(5 / 6)
    assert r["vc_correct"] == pytest.approx(5 / 12)
    r = video_consistency(pr, gt, n=3, ignore_index=255)   # p3 leaves A in w0
    assert r["vc"] == pytest.approx(1.0) and r["vc_correct"] == pytest.approx(0.5)
    # all C-n+1 windows: w2 = [2,3,4]: A={p0,p2}, B={p0,p1,p3} -> 1/2 (strict 1/2)
    r = video_consistency(pr, gt, n=3, drop_last_window=False)
    assert r["num_windows"] == 3
    assert r["vc"] == pytest.approx(13 / 18) and r["vc_correct"] == pytest.approx(4 / 9)
    assert video_consistency(pr[:3], gt[:3], n=3)["num_windows"] == 0  # C == n: no window


def _vc_reference(gts, preds, n):
    """Direct transcription of the definition: nanmean over windows i < C - n."""
    vals = []
    for i in range(len(gts) - n):
        a = np.ones(gts[0].shape, bool)
        b = np.ones(gts[0].shape, bool)
        for j in range(1, n):
            a &= gts[i] == gts[i + j]
            b &= preds[i] == preds[i + j]
        vals.append((a & b).sum() / a.sum() if a.sum() else np.nan)
    return vals


def test_vc_streaming_matches_reference_over_clips():
    rng = np.random.default_rng(3)
    vc = VideoConsistency(n=8)
    all_vals = []
    for length in (20, 13, 8):
        base = rng.integers(0, 3, (12, 10))
        gts = [np.where(rng.random((12, 10)) < 0.03, rng.integers(0, 3, (12, 10)), base) for _ in range(length)]
        preds = [np.where(rng.random((12, 10)) < 0.02, rng.integers(0, 3, (12, 10)), g) for g in gts]
        vc.new_clip()
        for g, p in zip(gts, preds):
            vc.update(torch.from_numpy(p), torch.from_numpy(g))
        all_vals += _vc_reference(gts, preds, 8)
    r = vc.compute()
    assert r["num_windows"] == 12 + 5 + 0
    assert r["vc"] == pytest.approx(float(np.nanmean(all_vals)))


# ----------------------------------------------------------------------------------------------
# flow estimators
# ----------------------------------------------------------------------------------------------
def _textured_pair(dx, dy, h=96, w=128):
    import cv2

    rng = np.random.default_rng(7)
    base = cv2.GaussianBlur(rng.random((h + 20, w + 20)).astype(np.float32), (0, 0), 1.5)
    base = (base - base.min()) / (base.max() - base.min())
    prev = base[10:10 + h, 10:10 + w]
    cur = base[10 + dy:10 + dy + h, 10 + dx:10 + dx + w]     # cur(x) = prev(x + d)
    to_t = lambda a: torch.from_numpy(np.ascontiguousarray(a)).expand(1, 3, h, w).clone()  # noqa: E731
    return to_t(cur), to_t(prev)


@pytest.mark.parametrize("method,tol", [("dis", 0.5), ("farneback", 0.5)])
def test_opencv_flow_recovers_translation(method, tol):
    cur, prev = _textured_pair(3, -2)
    est = OpenCVFlow(method)
    flow = est(cur, prev)
    assert flow.shape == (1, 2, 96, 128) and flow.dtype == torch.float32
    inner = flow[0, :, 12:-12, 12:-12]
    assert abs(inner[0].median().item() - 3) < tol
    assert abs(inner[1].median().item() + 2) < tol
    assert "opencv" in est.name and "OpenCV" in est.description


def test_model_flow_upsamples_and_scales():
    class QuarterNet(torch.nn.Module):
        def forward(self, x):                       # checks the [current, previous] order
            assert x.shape[1] == 6
            b, _, h, w = x.shape
            out = torch.empty(b, 2, (h + 3) // 4, (w + 3) // 4)
            out[:, 0] = x[:, 0].mean() * 10          # current carries 0.1 -> dx = 1 (1/4 grid)
            out[:, 1] = x[:, 3].mean() * 10          # previous carries 0.05 -> dy = 0.5
            return out

    est = ModelFlow(QuarterNet())
    cur, prev = torch.full((2, 3, 16, 24), 0.1), torch.full((2, 3, 16, 24), 0.05)
    flow = est(cur, prev)
    assert flow.shape == (2, 2, 16, 24)
    assert torch.allclose(flow[:, 0], torch.full((2, 16, 24), 4.0))
    assert torch.allclose(flow[:, 1], torch.full((2, 16, 24), 2.0))
    flow = est(cur[..., :15, :22], prev[..., :15, :22])   # ceil grid 4×6: scale by W/w, H/h
    assert torch.allclose(flow[:, 0], torch.full((2, 15, 22), 22 / 6))
    assert torch.allclose(flow[:, 1], torch.full((2, 15, 22), 0.5 * 15 / 4))
    assert est.name == "model-quarternet"
    with pytest.raises(ValueError, match="B×3×H×W"):
        est(cur[0], prev[0])
