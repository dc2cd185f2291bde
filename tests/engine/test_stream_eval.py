"""The stream evaluator and the predictors, by hand: 1×4 class maps, zero flow, a recording method."""
from __future__ import annotations

import pytest
import torch
from torch import Tensor

from engine.predictors import KeyframeStream
from engine.stream_eval import StreamEvaluator, clip_labels, evaluate_clips
from model.blocks import upsample4
from model.stream import StreamingNet

IGNORE = 255
# predictions of the scripted predictor on frames 0, 1, 2 of a clip (1×H×W, H = 1, W = 4)
SCRIPT = [[0, 0, 1, 1], [0, 1, 1, 1], [0, 1, 1, 1]]


class ZeroFlow:
    """A flow estimator that finds every pixel where it was: all pixels in the frame, all pass the
    forward-backward check."""

    name = "zero"
    description = "no motion"

    def __call__(self, current: Tensor, previous: Tensor) -> Tensor:
        return torch.zeros(current.shape[0], 2, *current.shape[-2:])


class Scripted:
    def __init__(self, preds: list[list[int]]):
        self.preds, self.position, self.resets = preds, 0, 0

    def reset(self) -> None:
        self.position, self.resets = 0, self.resets + 1

    def step(self, frame: Tensor) -> Tensor:
        pred = torch.tensor([[self.preds[self.position]]])  # 1×H×W
        self.position += 1
        return pred


class Constant:
    def reset(self) -> None:
        pass

    def step(self, frame: Tensor) -> Tensor:
        return torch.zeros(1, *frame.shape[-2:], dtype=torch.int64)


def _evaluator(vc_n=None) -> StreamEvaluator:
    return StreamEvaluator({"scripted": Scripted(SCRIPT), "constant": Constant()}, 2, IGNORE, ZeroFlow(),
                           vc_n=vc_n)


def test_accuracy_and_temporal_consistency_by_hand():
    ev = _evaluator(vc_n=2)
    frame = torch.zeros(1, 3, 1, 4)
    labels = [torch.tensor([[0, 0, 1, IGNORE]]), None, torch.tensor([[0, 0, 1, 1]])]
    preds = [ev.push(frame, label) for label in labels]
    assert torch.equal(preds[1]["scripted"], torch.tensor([[SCRIPT[1]]]))
    r = ev.results()
    s = r["scripted"]
    # labelled frames 0 and 2 (label, pred): (0,0) (0,0) (1,1) | (0,0) (0,1) (1,1) (1,1)
    # class 0: TP 3, FN 1 → 3/4; class 1: TP 3, FP 1 → 3/4; 6 of 7 pixels right
    assert s["miou"] == pytest.approx(0.75) and s["pixel_accuracy"] == pytest.approx(6 / 7)
    # pairs (P0, P1) and (P1, P2), P_t as reference: (0,0) ×2, (0,1) ×1, (1,1) ×5
    # class 0: 2 / (2 + 1) ; class 1: 5 / (5 + 1); with zero flow every pixel passes the fb check
    assert s["tc_etc"] == pytest.approx((2 / 3 + 5 / 6) / 2) and s["tc_fb"] == s["tc_etc"]
    assert s["num_pairs"] == 2 and s["in_frame_fraction"] == 1.0 and s["fb_valid_fraction"] == 1.0
    # the gap at frame 1 leaves no run of 2 labelled frames
    assert s["vc"] is None and s["vc_windows"] == 0
    c = r["constant"]
    assert c["tc_etc"] == 1.0                                  # class 0 only, never changes
    assert c["miou"] == pytest.approx((4 / 7 + 0.0) / 2)       # class 0: TP 4, FP 3; class 1: FN 3
    info = ev.description()
    assert info["flow_source"] == "zero" and info["flow_description"] == "no motion" and "VC_n" in info["vc_definition"]


def test_video_consistency_and_new_clips():
    ev = _evaluator(vc_n=2)
    clip = {"frames": torch.zeros(3, 3, 1, 4), "labels": torch.tensor([[[0, 0, 1, 1]]] * 3),
            "label": torch.tensor([[0, 0, 1, 1]])}
    evaluate_clips(ev, [clip, clip], "cpu", limit=1)
    s = ev.results()["scripted"]
    # the window (0, 1) counts (it has a successor; the last one is dropped): the ground truth is constant
    # on all 4 pixels, the prediction on pixels 0, 2, 3, and right there on frame 1
    assert (s["vc"], s["vc_correct"], s["vc_n"], s["vc_windows"]) == (0.75, 0.75, 2, 1)
    assert ev.predictors["scripted"].resets == 2                # at construction and before the clip
    seen = []
    evaluate_clips(ev, [clip, clip], "cpu", on_clip=lambda i, n: seen.append((i, n)))
    assert seen == [(0, 2), (1, 2)] and ev.results()["scripted"]["num_pairs"] == 3 * 2   # pairs never span clips


def test_clip_labels_dense_or_last_frame():
    frames = torch.zeros(3, 3, 1, 4)
    label = torch.tensor([[1, 1, 0, 0]])
    only_last = clip_labels({"frames": frames, "label": label}, "cpu")
    assert only_last[:2] == [None, None] and torch.equal(only_last[2], label)
    dense = clip_labels({"frames": frames, "label": label, "labels": torch.stack([label] * 3)}, "cpu")
    assert all(torch.equal(lab, label) for lab in dense)


class Recorder(StreamingNet):
    """A method whose stages say when they run: logits = the frame's first two channels on the 1/4 grid."""

    num_classes = 2

    def __init__(self):
        super().__init__()
        self.calls: list[str] = []

    def keyframe(self, frame: Tensor) -> Tensor:
        self.calls.append("key")
        return frame[:, :2, ::4, ::4]

    def flow(self, current: Tensor, previous: Tensor) -> Tensor:
        return torch.zeros(current.shape[0], 2, *current[..., ::4, ::4].shape[-2:])

    def rectify(self, frame: Tensor, carried: Tensor, key_classes: Tensor | None, wf: float | None = None) -> dict:
        self.calls.append("rectify")
        return {"logits": upsample4(carried)}


def test_keyframe_stream_schedule_and_reset():
    net = Recorder()
    predictor = KeyframeStream(net, 3)
    frames = torch.rand(7, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    preds = [predictor.step(frames[t:t + 1]) for t in range(7)]
    assert net.calls == ["key", "rectify", "rectify"] * 2 + ["key"]
    assert all(p.shape == (1, 8, 8) and p.dtype == torch.int64 for p in preds)
    # a propagated frame keeps the keyframe's classes (zero flow, rectify = the warped logits)
    assert torch.equal(preds[2], preds[0])
    net.calls.clear()
    predictor.reset()
    predictor.step(frames[5:6])
    assert net.calls == ["key"]
    every_frame = KeyframeStream(net, 1)
    net.calls.clear()
    for t in range(3):
        every_frame.step(frames[t:t + 1])
    assert net.calls == ["key"] * 3
    with pytest.raises(ValueError):
        KeyframeStream(net, 0)
