"""The keyframe-schedule sweep: fixed intervals, adaptive thresholds matched to their keyframe
fractions, budgets and the oracle, all replayed on the clips' propagation tables.

* fixed: ``Fixed(k)`` for each k;
* adaptive: for each fixed k's keyframe fraction, the ``Adaptive`` threshold (``max_interval`` =
  horizon, ``min_interval`` 1) whose fraction comes closest to it (:func:`match_threshold`);
* budget: ``Budget(target)`` for each target fraction (a budget whose controller waits the horizon or
  longer for a keyframe gets an ``error`` instead of scores: a longer horizon measures it);
* oracle: the best schedule with hindsight (:mod:`engine.keyframes.oracle`) at every keyframe count
  the others reached.

:func:`summarize` compares them at each fixed k's fraction (see its doc).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from engine.flow_estimators import FlowEstimator
from model.schedule import SIGNALS, Adaptive, Budget, Fixed, KeyframeSchedule

from .data import ClipSet
from .oracle import ClipOracle, oracle_point
from .simulate import HorizonError, evaluate_schedule, simulate
from .table import PropagationTable, StepTimes, build_table, clip_flows

__all__ = ["DEFAULT_BUDGETS", "DEFAULT_KS", "build_tables", "match_threshold", "run_sweep", "summarize"]

DEFAULT_KS = (1, 2, 3, 5, 7, 10, 15)
DEFAULT_BUDGETS = (0.5, 1 / 3, 0.2, 1 / 7, 0.1)


def build_tables(net: nn.Module, clips: ClipSet, horizon: int, device: torch.device | str,
                 estimator: FlowEstimator | None, wf: float | None = None,
                 progress: bool = True) -> list[PropagationTable]:
    """The propagation table of every clip (one clip's frames in memory at a time), with the flows of
    ``estimator`` for the temporal consistency (None: no TC)."""
    tables = []
    for clip in clips.clips:
        frames, labels = clip.load()
        table = build_table(net, frames.to(device), labels, clips.num_classes, clips.ignore_index, horizon, wf,
                            progress, clip.id)
        if estimator is not None:
            table.flows = clip_flows(frames, estimator)
        tables.append(table)
    return tables


def _keyframe_fraction(schedule: KeyframeSchedule, tables: Sequence[PropagationTable]) -> float:
    replays = [simulate(schedule, table) for table in tables]
    return sum(len(r.keyframes) for r in replays) / sum(t.num_frames for t in tables)


def match_threshold(tables: Sequence[PropagationTable], target: float, signal: str, max_interval: int,
                    min_interval: int = 1) -> float:
    """The adaptive threshold whose keyframe fraction over the clips is closest to ``target``.

    The fraction only changes where the threshold crosses a score in the tables, so the candidates are
    those scores (and one just below the smallest: every propagated frame a keyframe); a bisection on
    them assumes the fraction falls as the threshold rises, and the closest of every candidate tried
    is kept (ties: the higher threshold)."""
    values = np.unique(np.concatenate([t.signals[signal][np.isfinite(t.signals[signal])] for t in tables]))
    if values.size == 0:
        raise ValueError("the tables hold no distortion scores (clips of one frame, or horizon 1)")
    candidates = np.concatenate([[np.nextafter(values[0], -np.inf)], values])
    tried: dict[int, float] = {}

    def fraction(i: int) -> float:
        if i not in tried:
            tried[i] = _keyframe_fraction(Adaptive(float(candidates[i]), max_interval, min_interval, signal), tables)
        return tried[i]

    lo, hi = 0, len(candidates) - 1
    if fraction(lo) > target and fraction(hi) <= target:
        while hi - lo > 1:  # fraction(lo) > target >= fraction(hi)
            mid = (lo + hi) // 2
            if fraction(mid) > target:
                lo = mid
            else:
                hi = mid
    best = min(tried, key=lambda i: (abs(tried[i] - target), -i))
    return float(candidates[best])


def _interpolate(points: Sequence[tuple[float, float]], x: float) -> float | None:
    """The piecewise-linear curve through (x, y) points (the best y where x repeats) at ``x``; None outside."""
    curve = _envelope(points)
    xs = [p[0] for p in curve]
    if not curve or x < xs[0] or x > xs[-1]:
        return None
    return float(np.interp(x, xs, [p[1] for p in curve]))


def _envelope(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    best: dict[float, float] = {}
    for x, y in points:
        if y is not None:
            best[x] = max(y, best.get(x, y))
    return sorted(best.items())


def _fraction_reaching(points: Sequence[tuple[float, float]], level: float) -> float | None:
    """The smallest x at which the piecewise-linear curve through ``points`` reaches ``level`` (the
    smallest x measured when even it does; None when no point does)."""
    curve = _envelope(points)
    for i, (x, y) in enumerate(curve):
        if y >= level:
            if i == 0:
                return x
            x0, y0 = curve[i - 1]
            return x0 + (level - y0) * (x - x0) / (y - y0)
    return None


def summarize(fixed: Sequence[dict], adaptive: Sequence[dict], oracle: Sequence[dict]) -> dict:
    """At each fixed k's keyframe fraction: the mIoU of fixed, adaptive (its curve interpolated there)
    and the oracle (at the same keyframe count); ``adaptive_gain`` (points), ``gap_closed`` (the share
    of the fixed → oracle gap adaptive closes; None when the oracle is no better), and
    ``adaptive_fraction`` the smallest adaptive fraction reaching fixed k's mIoU (interpolated) with
    ``keyframe_saving_pct`` = 100·(1 − that / fixed k's fraction). mIoU in percent."""
    adaptive_curve = [(a["keyframe_fraction"], a["miou"]) for a in adaptive]
    oracle_at = {o["keyframes"]: o["miou"] for o in oracle}
    rows = []
    for f in fixed:
        fraction, miou = f["keyframe_fraction"], f["miou"]
        ada = _interpolate(adaptive_curve, fraction)
        best = oracle_at.get(f["keys"] + f["propagated_keys"])
        gain = None if ada is None or miou is None else ada - miou
        gap = None if gain is None or best is None or best - miou <= 1e-9 else gain / (best - miou)
        reach = None if miou is None else _fraction_reaching(adaptive_curve, miou)
        rows.append({"k": f["k"], "keyframe_fraction": fraction, "miou_fixed": miou, "miou_adaptive": ada,
                     "miou_oracle": best, "adaptive_gain": gain, "gap_closed": gap, "adaptive_fraction": reach,
                     "keyframe_saving_pct": None if reach is None else 100 * (1 - reach / fraction)})

    def mean(key: str) -> float | None:
        values = [r[key] for r in rows if r[key] is not None]
        return sum(values) / len(values) if values else None

    return {"at_fixed": rows, "mean_adaptive_gain": mean("adaptive_gain"), "mean_gap_closed": mean("gap_closed"),
            "mean_keyframe_saving_pct": mean("keyframe_saving_pct")}


def run_sweep(tables: Sequence[PropagationTable], ks: Sequence[int] = DEFAULT_KS,
              budgets: Sequence[float] = DEFAULT_BUDGETS, signal: str = "mean") -> dict:
    """Every schedule of the sweep on the tables: ``fixed``, ``adaptive``, ``budget``, ``oracle``,
    ``summary`` and the pooled ``step_times`` (mIoU and TC in percent)."""
    if signal not in SIGNALS:
        raise ValueError(f"unknown distortion signal {signal!r}; one of {', '.join(SIGNALS)}")
    times = StepTimes.pooled(tables)
    horizon = min(t.horizon for t in tables)
    fixed = [{"k": int(k), **evaluate_schedule(Fixed(k), tables, times).as_json()} for k in ks]
    adaptive = []
    for f in fixed:
        threshold = match_threshold(tables, f["keyframe_fraction"], signal, horizon)
        score = evaluate_schedule(Adaptive(threshold, horizon, 1, signal), tables, times)
        adaptive.append({"threshold": threshold, "matched_k": f["k"], "target_fraction": f["keyframe_fraction"],
                         **score.as_json()})
    budget = []
    for b in budgets:
        try:
            budget.append({"target": float(b), **evaluate_schedule(Budget(b, signal=signal), tables, times).as_json()})
        except HorizonError as err:  # the controller may wait up to 2·slack/target frames
            budget.append({"target": float(b), "error": str(err)})
    oracles = [ClipOracle(t) for t in tables]
    counts = sorted({r["keys"] + r["propagated_keys"] for r in fixed + adaptive + budget if "error" not in r})
    oracle = [oracle_point(tables, oracles, m) for m in counts]
    return {"fixed": fixed, "adaptive": adaptive, "budget": budget, "oracle": oracle,
            "summary": summarize(fixed, adaptive, oracle), "step_times": times.as_json()}
