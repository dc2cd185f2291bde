"""VSPW video consistency (engine/metrics/video_consistency.py): hand-computed windows and a direct
transcription of the official definition."""
import numpy as np
import pytest
import torch

from engine.metrics import VideoConsistency, video_consistency


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
