"""model.schedule: the keyframe policies' decisions on hand-made distortion sequences, the budget
controller on a long stream, and the stream running them on a hand-made method and on EVSS/DAVSS."""
from __future__ import annotations

import random

import pytest
import torch

from model import Adaptive, Budget, Fixed, KeyframeSchedule, StreamingNet, build_davss, build_evss, parse_schedule
from model.blocks import quarter_size
from model.schedule import distortion_signal


class ScriptedNet(StreamingNet):
    """A method whose predicted distortion at each rectified frame is read from ``script`` (a constant
    map), so that a policy's decisions can be worked out by hand; ``calls`` records the stages run."""

    num_classes = 2

    def __init__(self, script):
        super().__init__()
        self.script = list(script)
        self.calls: list[str] = []

    def keyframe(self, frame):
        self.calls.append("key")
        return torch.zeros(frame.shape[0], 2, *quarter_size(frame.shape[-2:]))

    def flow(self, current, previous):
        return torch.zeros(current.shape[0], 2, *quarter_size(current.shape[-2:]))

    def rectify(self, frame, carried, key_classes, wf=None):
        value = self.script.pop(0)
        self.calls.append(f"prop{value:g}")
        return {"logits": self.upsample(carried), "dm": torch.full((frame.shape[0], 1, *carried.shape[-2:]), value)}

    def distortion_q(self, out, wf=None):
        return out["dm"]


def keyframes(net, schedule, n):
    stream = net.stream(schedule=schedule)
    frames = torch.zeros(n, 1, 3, 8, 8)
    return [t for t in range(n) if stream.step(frames[t])["keyframe"]]


def test_fixed_runs_only_the_keyframe_network_on_keyframes():
    net = ScriptedNet([0.0] * 20)
    assert keyframes(net, Fixed(3), 8) == [0, 3, 6]
    assert net.calls == ["key", "prop0", "prop0", "key", "prop0", "prop0", "key", "prop0"]


def test_adaptive_decides_from_the_map_of_the_propagated_frame():
    # distortion of the propagated frames, in order (a keyframe consumes none)
    net = ScriptedNet([0.6, 0.2, 0.7, 0.1, 0.1, 0.1, 0.9, 0.2])
    # frame 1's 0.6 comes before min_interval 2; frame 3's 0.7 passes 0.5 after propagation; frames 4-6
    # stay low and frame 7, the 4th after frame 3, is due (max_interval 4) before any propagation;
    # frame 8's 0.9 is again too early
    assert keyframes(net, Adaptive(0.5, max_interval=4, min_interval=2), 9) == [0, 3, 7]
    assert net.calls == ["key", "prop0.6", "prop0.2", "prop0.7", "key", "prop0.1", "prop0.1", "prop0.1", "key",
                         "prop0.9"]


def test_adaptive_outputs_say_what_was_read_and_paid():
    net = ScriptedNet([0.2, 0.8])
    stream = net.stream(schedule=Adaptive(0.5, max_interval=10))
    frames = torch.zeros(3, 1, 3, 8, 8)
    first, low, high = (stream.step(f) for f in frames)
    assert first["keyframe"] and "distortion" not in first
    assert not low["keyframe"] and low["distortion"] == pytest.approx(0.2)
    assert high["keyframe"] and high["propagated"] and high["distortion"] == pytest.approx(0.8)
    assert net.calls == ["key", "prop0.2", "prop0.8", "key"]


def test_explicit_keyframe_overrides_the_schedule():
    net = ScriptedNet([0.9] * 5)
    stream = net.stream(schedule=Fixed(2))
    frames = torch.zeros(5, 1, 3, 8, 8)
    got = [stream.step(frames[0])["keyframe"], stream.step(frames[1], keyframe=True)["keyframe"],
           stream.step(frames[2], keyframe=False)["keyframe"], stream.step(frames[3])["keyframe"]]
    assert got == [True, True, False, True]  # frame 3 is 2 after the forced keyframe at 1


def test_signals_and_parse():
    dm = torch.tensor([0.2, 0.4, 0.6, 0.8]).view(1, 1, 2, 2)
    for text, expected in [("fixed:5", "fixed:5"), ("adaptive:0.3", "adaptive:0.3,signal=mean,min=1,max=30"),
                           ("adaptive:0.25,max=10,min=2,signal=above0.5",
                            "adaptive:0.25,signal=above0.5,min=2,max=10"),
                           ("budget:0.2", "budget:0.2,signal=mean")]:
        assert parse_schedule(text).describe() == expected
    for bad in ("fixed", "fixed:0", "fixed:2.5", "adaptive:x", "adaptive:0.3,max=0", "budget:1.5", "budget:0.2,k=3",
                "every:3", "adaptive:0.3,signal=median"):
        with pytest.raises(ValueError, match="schedule|signal"):
            parse_schedule(bad)
    assert distortion_signal(dm, "mean") == pytest.approx(0.5)
    assert distortion_signal(dm, "above0.5") == pytest.approx(0.5)
    assert distortion_signal(dm, "above0.7") == pytest.approx(0.25)
    base = KeyframeSchedule()
    assert base.signal is None and not base.due(100) and not base.decide(1.0, 100)


@pytest.mark.parametrize("target", [0.05, 0.1, 0.2, 0.35])
def test_budget_keeps_its_fraction_and_spends_it_on_high_distortion(target):
    """A long stream whose distortion grows with the distance from the keyframe, with bursts of motion."""
    rng = random.Random(7)
    schedule = Budget(target)
    since, keys, n = 0, 0, 20_000
    chosen, passed = [], []
    for t in range(n):
        since += 1
        motion = 3.0 if (t // 500) % 4 == 1 else 1.0          # every 4th stretch of 500 frames moves fast
        if t == 0 or schedule.due(since):
            key = True
        else:
            score = min(1.0, 0.01 * motion * since * (0.5 + rng.random()))
            key = schedule.decide(score, since)
            (chosen if key else passed).append(score)
        schedule.update(key)
        keys += key
        since = 0 if key else since
        assert abs(keys - target * (t + 1)) <= schedule.slack + 1 + 1e-9
    assert abs(keys / n - target) <= 0.02 * target
    assert sum(chosen) / len(chosen) > sum(passed) / len(passed)


def test_budget_spends_its_slack_where_the_video_moves():
    """Stretches of 40 frames alternate between slow and fast motion: within its slack the controller
    moves keyframes from the slow stretches to the fast ones."""
    schedule = Budget(0.1)
    since, fast_keys, slow_keys = 0, 0, 0
    for t in range(8000):
        since += 1
        fast = (t // 40) % 2 == 1
        key = t == 0 or schedule.due(since) or schedule.decide((0.04 if fast else 0.01) * since, since)
        schedule.update(key)
        since = 0 if key else since
        fast_keys += key and fast
        slow_keys += key and not fast
    assert abs(fast_keys + slow_keys - 800) <= schedule.slack + 1
    assert fast_keys > 1.3 * slow_keys


def test_a_net_without_a_distortion_map_cannot_be_scheduled_adaptively():
    class NoMap(ScriptedNet):
        def distortion_q(self, out, wf=None):
            return StreamingNet.distortion_q(self, out, wf)
    stream = NoMap([0.1]).stream(schedule=Adaptive(0.5))
    stream.step(torch.zeros(1, 3, 8, 8))
    with pytest.raises(NotImplementedError, match="NoMap predicts no distortion map"):
        stream.step(torch.zeros(1, 3, 8, 8))


@pytest.mark.parametrize("method", ["evss", "davss"])
def test_real_methods_read_their_map_the_same_in_both_output_modes(method):
    torch.manual_seed(0)
    net = (build_evss(11) if method == "evss" else build_davss(11, keyframe="csrnet")).eval()
    frames = torch.rand(6, 1, 3, 32, 48)
    runs = {}
    for pred_only in (False, True):
        stream = net.stream(pred_only=pred_only, schedule=Adaptive(0.3, max_interval=4))
        runs[pred_only] = [stream.step(f) for f in frames]
    for full, fast in zip(runs[False], runs[True]):
        assert full["keyframe"] == fast["keyframe"]
        if "distortion" in full:
            assert 0.0 <= full["distortion"] <= 1.0
            assert full["distortion"] == pytest.approx(fast["distortion"], abs=1e-6)
    propagated = net.stream(schedule=Adaptive(2.0)).step  # a threshold no map reaches
    propagated(frames[0])
    dm = net.distortion_q(propagated(frames[1]), None)
    assert dm.shape == (1, 1, 8, 12) and float(dm.min()) >= 0.0 and float(dm.max()) <= 1.0
