"""TemporalConsistency (engine/metrics/temporal_consistency.py) and the forward-backward mask
(engine/metrics/flow_consistency.py) on hand-made predictions and flows."""
import pytest
import torch

from engine.flow_estimators import FlowEstimator
from engine.metrics import TemporalConsistency, fb_consistency_mask
from model.warp import warp as WARP  # noqa: N812
from tests.label_maps import const_flow, t


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
