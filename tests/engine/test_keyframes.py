"""engine.keyframes: schedule replays on hand-made tables (kinds, mIoU, TC, ms per frame worked out by
hand), the horizon error, the oracle against brute force, the threshold matching and the summary, the
replay against net.stream(schedule=...) on EVSS and DAVSS, and the CamVid clips of a SegNet layout."""
from __future__ import annotations

import itertools
import random

import numpy as np
import pytest
import torch

from dataset import DatasetError
from dataset.synthetic import write_segnet_layout
from engine.keyframes import (KEY, PROPAGATED, PROPAGATED_KEY, ClipOracle, HorizonError, PropagationTable,
                              StepTimes, allocate, build_table, camvid_clips, evaluate_schedule, match_threshold,
                              oracle_point, schedule_confusion, simulate, sources_of, summarize)
from engine.keyframes.simulate import score_replays
from model import Adaptive, Budget, Fixed, build_davss, build_evss
from model.schedule import SIGNALS


def hand_table(horizon: int = 3, flows: bool = True) -> PropagationTable:
    """5 frames of 1×2 pixels, 2 classes: a keyframe predicts [0, 1] (right), a propagated frame [0, 0]
    (pixel 1 wrong). Labels [0, 1], except frame 3 (none) and frame 4 ([0, ignore])."""
    length = 5
    preds = [torch.tensor([[[0, 1]]] + [[[0, 0]]] * (min(horizon, length - j) - 1)) for j in range(length)]
    labels = [torch.tensor([[0, 1]])] * 3 + [None, torch.tensor([[0, 255]])]
    mean = np.full((length, horizon), np.nan)
    mean[0, 1:3] = [0.2, 0.9][:horizon - 1]
    mean[2, 1:3] = [0.1, 0.3][:horizon - 1]
    zero = [torch.zeros(1, 2, 1, 2)] * (length - 1) if flows else None
    return PropagationTable.from_predictions(preds, labels, horizon, 2, 255, {"mean": mean}, flows=zero,
                                             key_ms=[10.0, 9.0, 11.0], propagate_ms=[2.0, 1.0, 3.0], clip_id="hand")


def test_hand_table_entries():
    table = hand_table()
    assert table.correct[0].tolist() == [2, 1, 1] and table.correct[2].tolist() == [2, 0, 1]  # frame 3 unlabelled
    assert table.correct[4, 0] == 1 and table.span(4) == 1 and table.span(2) == 3
    assert table.confusion[0, 1].tolist() == [[1, 0], [1, 0]]
    assert np.isnan(table.signals["above0.5"]).all()
    with pytest.raises(IndexError, match="horizon 3"):
        table.pred(0, 3)


def test_adaptive_replay_kinds_miou_tc_and_cost_by_hand():
    table = hand_table()
    times = StepTimes.pooled([table])
    assert (times.key_ms, times.propagate_ms) == (10.0, 2.0)
    # frame 1: 0.2 stays; frame 2: 0.9 > 0.5 after propagation; frames 3, 4 read 0.1, 0.3 from keyframe 2
    replay = simulate(Adaptive(0.5, max_interval=3), table)
    assert replay.source == (0, 0, 2, 2, 2)
    assert replay.kind == (KEY, PROPAGATED, PROPAGATED_KEY, PROPAGATED, PROPAGATED)
    score = evaluate_schedule(Adaptive(0.5, max_interval=3), [table], times)
    assert score.keyframe_fraction == pytest.approx(2 / 5)
    assert score.ms_per_frame == pytest.approx((1 * 10 + 3 * 2 + 1 * (10 + 2)) / 5)
    # labelled pixels: label 0 → 0 on frames 0, 1, 2, 4; label 1 → 1 on 0, 2, → 0 on 1: IoU 4/5, 2/3
    assert score.miou == pytest.approx((4 / 5 + 2 / 3) / 2)
    # zero flow: pairs (P_t, P_t+1) = ([0,1],[0,0]), ([0,0],[0,1]), ([0,1],[0,0]), ([0,0],[0,0]) → rows P_t:
    # (0,0) ×5, (1,0) ×2, (0,1) ×1 → IoU_0 = 5/8, IoU_1 = 0
    assert score.tc == pytest.approx(5 / 16)
    assert (score.keys, score.propagated_keys, score.propagated, score.frames) == (1, 1, 3, 5)


def test_fixed_and_max_interval_by_hand():
    table = hand_table()
    times = StepTimes(10.0, 2.0, {})
    fixed = evaluate_schedule(Fixed(2), [table], times, consistency=False)
    assert simulate(Fixed(2), table).kind == (KEY, PROPAGATED, KEY, PROPAGATED, KEY)
    assert fixed.keyframe_fraction == pytest.approx(3 / 5)
    assert fixed.ms_per_frame == pytest.approx((3 * 10 + 2 * 2) / 5)
    assert fixed.tc is None
    assert simulate(Adaptive(0.95, max_interval=2), table).kind == (KEY, PROPAGATED, KEY, PROPAGATED, KEY)
    both = score_replays([table, table], [simulate(Fixed(2), table)] * 2, times)
    assert both.keyframe_fraction == pytest.approx(3 / 5) and both.frames == 10


def test_a_schedule_beyond_the_horizon_is_refused_naming_it():
    table = hand_table(horizon=3)
    simulate(Fixed(3), table)
    with pytest.raises(HorizonError, match="horizon is 3.*--horizon"):
        simulate(Fixed(4), table)
    with pytest.raises(HorizonError, match="horizon is 3"):
        simulate(Adaptive(0.95, max_interval=4), table)


def random_table(rng: random.Random, length: int, horizon: int, classes: int = 3) -> PropagationTable:
    gen = torch.Generator().manual_seed(rng.randrange(2 ** 31))
    preds = [torch.randint(0, classes, (min(horizon, length - j), 3, 3), generator=gen) for j in range(length)]
    labels = [torch.randint(0, classes, (3, 3), generator=gen) if rng.random() < 0.8 else None for _ in range(length)]
    signals = {name: np.full((length, horizon), np.nan) for name in SIGNALS}
    for name in SIGNALS:
        signals[name][:, 1:] = np.random.default_rng(rng.randrange(2 ** 31)).random((length, horizon - 1))
    return PropagationTable.from_predictions(preds, labels, horizon, classes, 255, signals)


def brute_force_best(table: PropagationTable) -> dict[int, int]:
    """The most correct pixels for each keyframe count over every keyframe set (frame 0 in it)."""
    best: dict[int, int] = {}
    for rest in itertools.product((False, True), repeat=table.num_frames - 1):
        keys = [0] + [t + 1 for t, k in enumerate(rest) if k]
        source = sources_of(keys, table.num_frames)
        if any(t - j >= table.horizon for t, j in enumerate(source)):
            continue
        value = sum(int(table.correct[j, t - j]) for t, j in enumerate(source))
        best[len(keys)] = max(best.get(len(keys), -1), value)
    return best


def test_oracle_equals_brute_force_on_random_tables():
    rng = random.Random(3)
    for _ in range(25):
        table = random_table(rng, rng.randint(1, 8), rng.randint(1, 4))
        oracle, expected = ClipOracle(table), brute_force_best(table)
        assert {m for m in range(1, table.num_frames + 1) if oracle.feasible(m)} == set(expected)
        for m, value in expected.items():
            assert oracle.best[m] == value
            keys = oracle.keyframes(m)
            source = sources_of(keys, table.num_frames)
            assert len(keys) == m and keys[0] == 0 and max(t - j for t, j in enumerate(source)) < table.horizon
            assert sum(int(table.correct[j, t - j]) for t, j in enumerate(source)) == value


def test_allocation_over_clips_equals_brute_force():
    rng = random.Random(5)
    for _ in range(6):
        tables = [random_table(rng, rng.randint(2, 6), rng.randint(2, 3)) for _ in range(3)]
        oracles = [ClipOracle(t) for t in tables]
        per_clip = [brute_force_best(t) for t in tables]
        for total in range(sum(o.min_keyframes for o in oracles), sum(t.num_frames for t in tables) + 1):
            best = max(sum(b[m] for b, m in zip(per_clip, ms)) for ms in itertools.product(*per_clip)
                       if sum(ms) == total)
            counts = allocate(oracles, total)
            assert sum(counts) == total and sum(o.best[m] for o, m in zip(oracles, counts)) == best
            point = oracle_point(tables, oracles, total)
            sources = [sources_of(o.keyframes(m), t.num_frames) for t, o, m in zip(tables, oracles, counts)]
            cm = schedule_confusion(tables, sources)
            assert point["correct"] == best == int(cm.matrix.trace())
            assert point["miou"] == pytest.approx(100 * cm.miou())
        with pytest.raises(ValueError, match="cannot cover"):
            allocate(oracles, sum(t.num_frames for t in tables) + 1)


def test_threshold_matching_finds_the_closest_fraction():
    rng = random.Random(11)
    tables = [random_table(rng, 12, 6) for _ in range(2)]
    values = sorted({float(v) for t in tables for v in t.signals["mean"][np.isfinite(t.signals["mean"])]})
    frames = sum(t.num_frames for t in tables)

    def fraction(threshold):
        return sum(len(simulate(Adaptive(threshold, 6), t).keyframes) for t in tables) / frames

    reachable = [fraction(v) for v in [-1.0] + values]
    for target in (1.0, 0.6, 0.45, 0.3, 0.2, 0.0):
        got = fraction(match_threshold(tables, target, "mean", 6))
        assert abs(got - target) == pytest.approx(min(abs(f - target) for f in reachable))


def test_summary_by_hand():
    fixed = [{"k": 2, "keyframe_fraction": 0.5, "miou": 60.0, "keys": 10, "propagated_keys": 0},
             {"k": 5, "keyframe_fraction": 0.2, "miou": 50.0, "keys": 4, "propagated_keys": 0}]
    adaptive = [{"keyframe_fraction": 0.5, "miou": 64.0}, {"keyframe_fraction": 0.2, "miou": 55.0},
                {"keyframe_fraction": 0.3, "miou": 61.0}]
    oracle = [{"keyframes": 10, "miou": 70.0}, {"keyframes": 4, "miou": 50.0}]
    rows = summarize(fixed, adaptive, oracle)["at_fixed"]
    assert rows[0]["adaptive_gain"] == pytest.approx(4.0) and rows[0]["gap_closed"] == pytest.approx(0.4)
    # adaptive reaches 60 between (0.2, 55) and (0.3, 61): at 0.2 + 5/6·0.1; saving 1 − that / 0.5
    assert rows[0]["adaptive_fraction"] == pytest.approx(0.2 + 0.1 * 5 / 6)
    assert rows[0]["keyframe_saving_pct"] == pytest.approx(100 * (1 - (0.2 + 0.1 * 5 / 6) / 0.5))
    assert rows[1]["gap_closed"] is None and rows[1]["adaptive_gain"] == pytest.approx(5.0)  # oracle no better
    assert rows[1]["keyframe_saving_pct"] == pytest.approx(0.0)  # the lowest adaptive point already reaches it


@pytest.mark.slow
@pytest.mark.parametrize("method", ["evss", "davss"])
def test_replay_equals_the_scheduled_stream(method, one_thread):
    torch.manual_seed(0)
    net = (build_evss(11) if method == "evss" else build_davss(11, keyframe="csrnet")).eval()
    length = 10
    frames = torch.rand(length, 3, 32, 48)
    labels = [torch.randint(0, 12, (32, 48)) if t % 3 else None for t in range(length)]
    table = build_table(net, frames, labels, 11, 11, horizon=length, progress=False)
    assert len(table.key_ms) == length and len(table.propagate_ms) == length * (length - 1) // 2
    median = float(np.nanmedian(table.signals["mean"]))
    schedules = [Fixed(3), Adaptive(median, max_interval=length), Budget(0.3), Adaptive(0.5, 4, 2, "above0.3")]
    for schedule in schedules:
        replay = simulate(schedule, table)
        stream = net.stream(pred_only=True, schedule=schedule)
        outs = [stream.step(frames[t:t + 1]) for t in range(length)]
        assert [o["keyframe"] for o in outs] == [k != PROPAGATED for k in replay.kind], schedule.describe()
        assert [o.get("propagated", False) for o in outs] == [k == PROPAGATED_KEY for k in replay.kind]
        for t, out in enumerate(outs):
            assert torch.equal(out["pred"][0].to(torch.uint8), table.pred(replay.source[t], t))
    kinds = simulate(schedules[1], table).kind
    assert PROPAGATED_KEY in kinds and PROPAGATED in kinds  # the median threshold splits the decisions


def test_camvid_clips_of_a_segnet_layout(tmp_path):
    write_segnet_layout(tmp_path, "val", num_clips=1, height=16, width=24, num_frames=6)
    clips = camvid_clips(tmp_path, "val")
    assert [c.num_frames for c in clips.clips] == [6] and (clips.num_classes, clips.ignore_index) == (11, 11)
    frames, labels = clips.clips[0].load()
    assert frames.shape == (6, 3, 16, 24) and all(lb.shape == (16, 24) and lb.dtype == torch.int64 for lb in labels)
    third = sorted((tmp_path / "val").iterdir())[2]   # a frame number jump of 4 instead of 2 ...
    third.unlink()
    (tmp_path / "valannot" / f"{third.stem}.png").unlink()
    assert [c.num_frames for c in camvid_clips(tmp_path, "val").clips] == [5]
    assert [c.num_frames for c in camvid_clips(tmp_path, "val", max_gap=2).clips] == [2, 3]  # ... splits there
    for path in sorted((tmp_path / "val").iterdir())[1:]:
        path.unlink()
        (tmp_path / "valannot" / f"{path.stem}.png").unlink()
    with pytest.raises(DatasetError, match="no two consecutive stored frames"):
        camvid_clips(tmp_path, "val")
