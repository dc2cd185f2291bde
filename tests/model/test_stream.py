"""model.stream: the loop every keyframe method runs in, on a hand-made method and on the real ones."""
from __future__ import annotations

import pytest
import torch

from model import Stream, StreamingNet, build_davss, build_evss
from model.blocks import quarter_size
from model.inference import optimize_for_inference


class ShiftNet(StreamingNet):
    """A method whose stages are known by hand: the keyframe logits are the frame's first two channels
    pooled to the 1/4 grid, the flow moves everything one 1/4-grid pixel to the right, and rectify adds
    one to the carried logits."""

    num_classes = 2

    def __init__(self):
        super().__init__()
        self.calls: list[str] = []

    def keyframe(self, frame):
        self.calls.append("keyframe")
        return torch.nn.functional.avg_pool2d(frame[:, :2], 4, ceil_mode=True)

    def flow(self, current, previous):
        self.calls.append("flow")
        flow = torch.zeros(current.shape[0], 2, *quarter_size(current.shape[-2:]))
        flow[:, 0] = -1.0  # each pixel is found one pixel to its left in the previous frame
        return flow

    def rectify(self, frame, carried, key_classes, wf=None):
        self.calls.append("rectify")
        return {"logits": self.upsample(carried + 1), "seen_key_classes": key_classes}


def shifted_right(x):
    """x moved one pixel right, the first column repeated (the warp clamps at the border)."""
    return torch.cat([x[..., :1], x[..., :-1]], -1)


def test_stream_runs_the_stages_in_order_and_carries_the_warped_state():
    net = ShiftNet()
    frames = torch.rand(3, 1, 3, 8, 16)
    stream = net.stream()
    key = stream.step(frames[0])
    assert key["keyframe"] and net.calls == ["keyframe"]
    logits_q = torch.nn.functional.avg_pool2d(frames[0][:, :2], 4, ceil_mode=True)
    torch.testing.assert_close(key["key_logits"], logits_q)
    assert torch.equal(key["pred"], key["logits"].argmax(1))

    first = stream.step(frames[1])
    second = stream.step(frames[2])
    assert net.calls == ["keyframe", "flow", "rectify", "flow", "rectify"]
    torch.testing.assert_close(first["warped"], shifted_right(logits_q))
    torch.testing.assert_close(second["warped"], shifted_right(shifted_right(logits_q)))
    # corrections never propagate: the second step warps the raw warped state, not first's +1
    torch.testing.assert_close(stream.carried, second["warped"])
    assert torch.equal(second["seen_key_classes"], logits_q.argmax(1, keepdim=True))
    assert not second["keyframe"] and second["flow"].shape == (1, 2, 2, 4)


def test_state_and_restore_branch_a_stream():
    net = ShiftNet()
    frames = torch.rand(3, 1, 3, 8, 16)
    stream = Stream(net)
    stream.step(frames[0], keyframe=True)
    after_key = stream.state
    a = stream.step(frames[1])
    stream.step(frames[2])
    stream.restore(after_key)
    b = stream.step(frames[1])
    assert torch.equal(a["logits"], b["logits"])
    stream.reset()
    assert stream.carried is None and stream.step(frames[1])["keyframe"]


def test_pred_only_default_crops_and_argmaxes_rectify():
    net = ShiftNet()
    frames = torch.rand(2, 1, 3, 7, 13)  # not divisible by 4: predictions are cropped to H×W
    full, pred_only = Stream(net), Stream(net, pred_only=True)
    for i, frame in enumerate(frames):
        a, b = full.step(frame, keyframe=i == 0), pred_only.step(frame, keyframe=i == 0)
        assert "logits" not in b and b["pred"].shape == (1, 7, 13)
        assert torch.equal(a["pred"], b["pred"])


def test_stream_errors():
    stream = Stream(ShiftNet())
    with pytest.raises(ValueError, match="keyframe first"):
        stream.propagate(torch.rand(1, 3, 8, 16))
    stream.step(torch.rand(1, 3, 8, 16))
    with pytest.raises(ValueError, match="same size"):
        stream.step(torch.rand(1, 3, 8, 12))


@pytest.mark.slow
@pytest.mark.parametrize("method", ["evss", "evss_pred_only", "evss_optimised", "davss"])
def test_real_methods_stream_equals_segment_clip(method):
    torch.manual_seed(0)
    frames = [torch.rand(1, 3, 36, 52) for _ in range(3)]
    if method == "davss":
        net = build_davss(5, keyframe="csrnet").eval()
    else:
        net = build_evss(5).eval()
    reference = net.segment_clip(frames)["pred"]
    stream = {"evss": lambda: net.stream(), "davss": lambda: net.stream(),
              "evss_pred_only": lambda: net.stream(pred_only=True),
              "evss_optimised": lambda: optimize_for_inference(net).stream()}[method]()
    for i, frame in enumerate(frames):
        out = stream.step(frame, keyframe=i == 0)
    assert out["pred"].shape == reference.shape
    assert (out["pred"] == reference).float().mean() > 0.999
