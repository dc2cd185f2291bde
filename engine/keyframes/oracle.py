"""The best keyframe schedule with hindsight: an upper bound for any schedule with as many keyframes.

On one clip's propagation table, frame t predicted from keyframe j scores ``correct[j, t − j]`` (its
correctly labelled pixels). A schedule with m keyframes splits the clip into m segments, each
starting at its keyframe (frame 0 is one) and no longer than the horizon; :class:`ClipOracle` finds,
for every m, the split with the most correct pixels by dynamic programming over the segments'
ends (O(T²·horizon) for a clip of T frames). Over several clips :func:`allocate` shares a total
number of keyframes between the clips to maximise the total (a second dynamic programme over the
clips' best-for-m values), and :func:`oracle_point` reads the mIoU of the chosen schedules from the
summed confusion matrices.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from engine.metrics.reduction import nan_to_none

from .simulate import schedule_confusion
from .table import PropagationTable

__all__ = ["ClipOracle", "allocate", "oracle_point", "sources_of"]

#: the score of an infeasible schedule (one such term at most is ever added to pixel counts)
_NEG = np.int64(-(2 ** 62))


class ClipOracle:
    """The best schedules of one clip for every keyframe count m = 1..T (see the module doc).

    ``best[m]``: the most correct pixels with m keyframes (a large negative number when no schedule
    with m keyframes keeps every segment within the horizon); :meth:`keyframes` the frames of one
    schedule reaching it.
    """

    def __init__(self, table: PropagationTable):
        length, horizon = table.num_frames, table.horizon
        self.num_frames, self.horizon = length, horizon
        # seg[j, d]: the correct pixels of frames j .. j+d−1 predicted from keyframe j (d = 1..horizon)
        seg = np.zeros((length, horizon + 1), dtype=np.int64)
        seg[:, 1:] = np.cumsum(table.correct, axis=1)
        # value[k, e]: the best with k segments covering frames 0 .. e−1; step[k, e]: its last segment's length
        value = np.full((length + 1, length + 1), _NEG, dtype=np.int64)
        step = np.zeros((length + 1, length + 1), dtype=np.int32)
        value[0, 0] = 0
        for k in range(1, length + 1):
            for d in range(1, horizon + 1):
                ends = np.arange(d, length + 1)
                starts = ends - d
                feasible = value[k - 1, starts] > _NEG
                candidate = np.where(feasible, value[k - 1, starts] + seg[starts, d], _NEG)
                better = candidate > value[k, ends]
                value[k, ends[better]] = candidate[better]
                step[k, ends[better]] = d
        self.best = value[:, length]
        self._step = step

    @property
    def min_keyframes(self) -> int:
        """The fewest keyframes whose segments all fit within the horizon: ceil(T / horizon)."""
        return -(-self.num_frames // self.horizon)

    def feasible(self, m: int) -> bool:
        return self.min_keyframes <= m <= self.num_frames

    def keyframes(self, m: int) -> list[int]:
        """The keyframes (ascending, frame 0 first) of a best schedule with ``m`` keyframes."""
        if not self.feasible(m):
            raise ValueError(f"{m} keyframes cannot cover {self.num_frames} frames within the horizon "
                             f"{self.horizon}: between {self.min_keyframes} and {self.num_frames}")
        keys, end = [], self.num_frames
        for k in range(m, 0, -1):
            end -= int(self._step[k, end])
            keys.append(end)
        return keys[::-1]


def sources_of(keyframes: Sequence[int], num_frames: int) -> list[int]:
    """The keyframe each frame is predicted from (the last one at or before it)."""
    keys = sorted(keyframes)
    if not keys or keys[0] != 0:
        raise ValueError("frame 0 must be a keyframe")
    source, i = [], 0
    for t in range(num_frames):
        while i + 1 < len(keys) and keys[i + 1] <= t:
            i += 1
        source.append(keys[i])
    return source


def allocate(oracles: Sequence[ClipOracle], total: int) -> list[int]:
    """The keyframe count of each clip, summing to ``total``, that maximises the clips' summed best."""
    low = sum(o.min_keyframes for o in oracles)
    high = sum(o.num_frames for o in oracles)
    if not low <= total <= high:
        raise ValueError(f"{total} keyframes cannot cover the clips within their horizon: between {low} and {high}")
    # value[M]: the best over the clips so far with M keyframes in all; picks[c][M]: clip c's count there
    value = np.full(high + 1, _NEG, dtype=np.int64)
    value[0] = 0
    picks = []
    for oracle in oracles:
        new = np.full(high + 1, _NEG, dtype=np.int64)
        pick = np.zeros(high + 1, dtype=np.int64)
        for m in range(oracle.min_keyframes, oracle.num_frames + 1):
            before = value[:high + 1 - m]
            candidate = np.where(before > _NEG, before + oracle.best[m], _NEG)
            better = candidate > new[m:]
            new[m:][better] = candidate[better]
            pick[m:][better] = m
        value = new
        picks.append(pick)
    counts, left = [], total
    for pick in reversed(picks):
        counts.append(int(pick[left]))
        left -= counts[-1]
    return counts[::-1]


def oracle_point(tables: Sequence[PropagationTable], oracles: Sequence[ClipOracle], total: int) -> dict:
    """The oracle with ``total`` keyframes over the clips: ``keyframes``, ``keyframe_fraction``,
    ``miou`` (in percent, None without labelled pixels) and ``correct`` (pixels)."""
    counts = allocate(oracles, total)
    sources = [sources_of(o.keyframes(m), t.num_frames) for t, o, m in zip(tables, oracles, counts, strict=True)]
    cm = schedule_confusion(tables, sources)
    miou = nan_to_none(cm.miou())
    frames = sum(t.num_frames for t in tables)
    return {"keyframes": int(total), "keyframe_fraction": total / frames, "miou": None if miou is None else 100 * miou,
            "correct": int(sum(o.best[m] for o, m in zip(oracles, counts, strict=True)))}
