"""Replay a keyframe schedule on propagation tables, and score it over clips.

:func:`simulate` asks a :class:`model.schedule.KeyframeSchedule` what :meth:`model.stream.Stream.step`
would ask it, in the same order (frame 0 a keyframe without asking; then ``due(since)`` before a
frame; for a propagated frame ``decide(score, since)`` with the statistic of its distortion map when
the schedule reads one; ``update(keyframe)`` after every frame), with the scores read from the table
instead of the network. Each frame ends up as one of

* ``KEY``: a keyframe without propagation (cost: a keyframe step);
* ``PROPAGATED_KEY``: propagated, then re-segmented by the keyframe network (both steps);
* ``PROPAGATED``: propagated and rectified from the last keyframe (a propagation step).

:func:`evaluate_schedule` sums the confusion matrices of the frames' predictions over clips (mIoU),
counts keyframes, prices the steps with the measured step times (ms per frame) and measures the
temporal consistency of the replayed predictions (ETC's TC with the tables' flows).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from engine.config import ConfigError
from engine.metrics import ConfusionMatrix, TemporalConsistency
from engine.metrics.reduction import nan_to_none
from model.schedule import KeyframeSchedule

from .table import PropagationTable, StepTimes

__all__ = ["KEY", "PROPAGATED", "PROPAGATED_KEY", "HorizonError", "Replay", "ScheduleScore", "evaluate_schedule",
           "schedule_confusion", "score_replays", "simulate", "temporal_consistency"]

KEY, PROPAGATED_KEY, PROPAGATED = "key", "propagated_key", "propagated"


class HorizonError(ConfigError):
    """A schedule propagates farther from a keyframe than the table holds."""


@dataclass(frozen=True)
class Replay:
    """A schedule on one clip: ``source[t]`` is the keyframe frame t is predicted from (t itself for a
    keyframe), ``kind[t]`` one of KEY, PROPAGATED_KEY, PROPAGATED."""

    source: tuple[int, ...]
    kind: tuple[str, ...]

    @property
    def keyframes(self) -> list[int]:
        return [t for t, k in enumerate(self.kind) if k != PROPAGATED]

    def count(self, kind: str) -> int:
        return sum(k == kind for k in self.kind)


def simulate(schedule: KeyframeSchedule, table: PropagationTable) -> Replay:
    """Replay ``schedule`` (reset first) on one clip's table, as ``net.stream(schedule=schedule)`` would
    run it. Raises :class:`HorizonError` when it propagates ``horizon`` or more frames from a keyframe."""
    schedule.reset()
    source, kind = [], []
    key, since = 0, 0
    for t in range(table.num_frames):
        since += 1
        if t == 0 or schedule.due(since):
            step = KEY
        else:
            if since >= table.horizon:
                raise HorizonError(
                    f"schedule {schedule.describe()} propagates frame {t} of clip {table.clip_id or '?'} "
                    f"{since} frames from its keyframe {key}, but the propagation table's horizon is "
                    f"{table.horizon} (intervals up to {table.horizon - 1}): raise --horizon")
            step = PROPAGATED
            if schedule.signal is not None and schedule.decide(float(table.signals[schedule.signal][key, since]),
                                                               since):
                step = PROPAGATED_KEY
        if step != PROPAGATED:
            key, since = t, 0
        source.append(key)
        kind.append(step)
        schedule.update(step != PROPAGATED)
    return Replay(tuple(source), tuple(kind))


def schedule_confusion(tables: Sequence[PropagationTable], sources: Sequence[Sequence[int]]) -> ConfusionMatrix:
    """The confusion matrix summed over every labelled frame of the clips, frame t of clip c predicted
    from keyframe ``sources[c][t]``."""
    first = tables[0]
    cm = ConfusionMatrix(first.num_classes, first.ignore_index)
    for table, source in zip(tables, sources, strict=True):
        index = torch.arange(table.num_frames)
        j = torch.as_tensor(source, dtype=torch.int64)
        cm.merge(table.confusion[j, index - j].sum(0))
    return cm


@dataclass(frozen=True)
class ScheduleScore:
    """A schedule over clips: mIoU and TC as fractions (None when undefined), the keyframe fraction
    (keyframes / frames), ms per frame, and the frame counts per kind."""

    miou: float | None
    tc: float | None
    keyframe_fraction: float
    ms_per_frame: float
    frames: int
    keys: int
    propagated_keys: int
    propagated: int

    def as_json(self, percent: bool = True) -> dict:
        """``keyframe_fraction``, ``miou``, ``tc`` (in percent when ``percent``), ``ms_per_frame`` and the counts."""
        scale = 100.0 if percent else 1.0
        return {"keyframe_fraction": self.keyframe_fraction,
                "miou": None if self.miou is None else scale * self.miou,
                "tc": None if self.tc is None else scale * self.tc,
                "ms_per_frame": self.ms_per_frame, "frames": self.frames, "keys": self.keys,
                "propagated_keys": self.propagated_keys, "propagated": self.propagated}


def temporal_consistency(tables: Sequence[PropagationTable], replays: Sequence[Replay]) -> float | None:
    """ETC's TC of the replayed predictions: the mIoU between P_t and P_t+1 warped back onto frame t
    with the tables' flows (:class:`engine.metrics.TemporalConsistency`, out-of-frame pixels
    excluded); None when a table has no flows."""
    if any(table.flows is None for table in tables):
        return None
    tc = TemporalConsistency(tables[0].num_classes, flow_source="given flows", fb_check=False)
    for table, replay in zip(tables, replays, strict=True):
        for t, flow in enumerate(table.flows):
            tc.update(table.pred(replay.source[t], t), table.pred(replay.source[t + 1], t + 1), flow)
    return tc.compute()["tc_etc"]


def evaluate_schedule(schedule: KeyframeSchedule, tables: Sequence[PropagationTable], times: StepTimes,
                      consistency: bool = True) -> ScheduleScore:
    """Replay ``schedule`` on every clip and score it (see the module doc): ms per frame =
    (KEY·key_ms + PROPAGATED·propagate_ms + PROPAGATED_KEY·(propagate_ms + key_ms)) / frames;
    ``consistency=False`` skips the TC (None)."""
    replays = [simulate(schedule, table) for table in tables]
    return score_replays(tables, replays, times, consistency)


def score_replays(tables: Sequence[PropagationTable], replays: Sequence[Replay], times: StepTimes,
                  consistency: bool = True) -> ScheduleScore:
    """The :class:`ScheduleScore` of given replays (see :func:`evaluate_schedule`)."""
    keys = sum(r.count(KEY) for r in replays)
    prop_keys = sum(r.count(PROPAGATED_KEY) for r in replays)
    prop = sum(r.count(PROPAGATED) for r in replays)
    frames = keys + prop_keys + prop
    ms = (keys * times.key_ms + prop * times.propagate_ms
          + prop_keys * (times.propagate_ms + times.key_ms)) / frames
    cm = schedule_confusion(tables, [r.source for r in replays])
    tc = temporal_consistency(tables, replays) if consistency else None
    return ScheduleScore(nan_to_none(cm.miou()), tc, (keys + prop_keys) / frames, ms, frames, keys, prop_keys, prop)
