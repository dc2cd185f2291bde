"""Whole-video evaluation of keyframe schedules on cached propagation tables.

* :mod:`.table`: every frame of a clip segmented from every keyframe within a horizon, with its
  confusion matrix, correct pixels, distortion statistics and the measured step times;
* :mod:`.simulate`: a :class:`model.schedule.KeyframeSchedule` replayed on the tables exactly as
  :meth:`model.stream.Stream.step` runs it, and scored (mIoU, keyframe fraction, ms per frame, TC);
* :mod:`.oracle`: the best schedule with hindsight for a number of keyframes;
* :mod:`.sweep`: fixed, adaptive, budget and oracle schedules compared; :mod:`.plot` its figure;
* :mod:`.data`: the whole clips (synthetic, CamVid SegNet layout).

``python -m tools.keyframe_sweep`` is the command line.
"""
from .data import Clip, ClipSet, camvid_clips, synthetic_clips
from .oracle import ClipOracle, allocate, oracle_point, sources_of
from .plot import plot_sweep
from .simulate import (KEY, PROPAGATED, PROPAGATED_KEY, HorizonError, Replay, ScheduleScore, evaluate_schedule,
                       schedule_confusion, score_replays, simulate)
from .sweep import DEFAULT_BUDGETS, DEFAULT_KS, build_tables, match_threshold, run_sweep, summarize
from .table import PropagationTable, StepTimes, build_table, clip_flows

__all__ = ["Clip", "ClipOracle", "ClipSet", "DEFAULT_BUDGETS", "DEFAULT_KS", "HorizonError", "KEY", "PROPAGATED",
           "PROPAGATED_KEY", "PropagationTable", "Replay", "ScheduleScore", "StepTimes", "allocate", "build_table",
           "build_tables", "camvid_clips", "clip_flows", "evaluate_schedule", "match_threshold", "oracle_point",
           "plot_sweep", "run_sweep", "schedule_confusion", "score_replays", "simulate", "sources_of",
           "summarize", "synthetic_clips"]
