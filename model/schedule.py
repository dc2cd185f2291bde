"""Keyframe schedules: when a :class:`model.stream.Stream` runs the keyframe network.

A schedule sees each frame twice:

* before it, :meth:`KeyframeSchedule.due` (``since``: frames since the last keyframe, this one
  included) may ask for a keyframe outright (a fixed interval, a maximum interval, a budget that has
  fallen behind): the frame is segmented by the keyframe network only;
* otherwise the frame is propagated and rectified, and :meth:`KeyframeSchedule.decide` reads a
  statistic of the distortion map the method predicted for it (EVSS: the fine map on the 1/4 grid;
  DAVSS: the DMNet map). "Keyframe" re-segments the frame with the keyframe network; the map was
  computed anyway, so the decision itself costs nothing.

After every frame :meth:`KeyframeSchedule.update` hears whether it became a keyframe (the budget
controller's bookkeeping). :meth:`KeyframeSchedule.reset` starts a new video.

Policies: :class:`Fixed` (every k-th frame, the seed methods' schedule), :class:`Adaptive` (a
threshold on the statistic, within [min_interval, max_interval]) and :class:`Budget` (an online
controller that keeps the keyframe fraction near a target and spends it where the statistic is
highest). :func:`parse_schedule` reads them from text (``fixed:5``, ``adaptive:0.3,max=10``,
``budget:0.2``).
"""
from __future__ import annotations

import math
from typing import Callable

from torch import Tensor

__all__ = ["Adaptive", "Budget", "Fixed", "KeyframeSchedule", "SIGNALS", "distortion_signal", "parse_schedule"]


def _share_above(level: float) -> Callable[[Tensor], Tensor]:
    return lambda dm: (dm > level).float().mean(dim=(1, 2, 3))


#: Statistics of a distortion map B×1×h×w (values in [0, 1]) → B scores: the mean, or the share of
#: pixels predicted distorted above 0.3, 0.5 or 0.7.
SIGNALS: dict[str, Callable[[Tensor], Tensor]] = {
    "mean": lambda dm: dm.float().mean(dim=(1, 2, 3)),
    "above0.3": _share_above(0.3),
    "above0.5": _share_above(0.5),
    "above0.7": _share_above(0.7),
}


def distortion_signal(dm: Tensor, signal: str) -> float:
    """The named statistic of a distortion map (B×1×h×w); the largest over the batch."""
    if signal not in SIGNALS:
        raise ValueError(f"unknown distortion signal {signal!r}; one of {', '.join(SIGNALS)}")
    return float(SIGNALS[signal](dm).max())


class KeyframeSchedule:
    """When to run the keyframe network (see the module doc). The base class never asks for one."""

    #: the statistic of the distortion map :meth:`decide` reads (None: it reads none)
    signal: str | None = None

    def reset(self) -> None:
        """Start a new video."""

    def due(self, since: int) -> bool:
        """A keyframe before propagating, ``since`` frames after the last keyframe."""
        return False

    def decide(self, score: float, since: int) -> bool:
        """A keyframe after propagating, given the frame's distortion statistic."""
        return False

    def update(self, keyframe: bool) -> None:
        """Hear whether the frame just processed became a keyframe."""

    def describe(self) -> str:
        return type(self).__name__.lower()


class Fixed(KeyframeSchedule):
    """A keyframe every ``k`` frames (frames 0, k, 2k, ...)."""

    def __init__(self, k: int):
        if int(k) != k or k < 1:
            raise ValueError(f"fixed schedule: k must be an integer >= 1, got {k}")
        self.k = int(k)

    def due(self, since: int) -> bool:
        return since >= self.k

    def describe(self) -> str:
        return f"fixed:{self.k}"


class Adaptive(KeyframeSchedule):
    """A keyframe when the distortion statistic passes ``threshold``, at least ``min_interval`` and at
    most ``max_interval`` frames after the previous one."""

    def __init__(self, threshold: float, max_interval: int = 30, min_interval: int = 1, signal: str = "mean"):
        if signal not in SIGNALS:
            raise ValueError(f"unknown distortion signal {signal!r}; one of {', '.join(SIGNALS)}")
        if not 1 <= min_interval <= max_interval:
            raise ValueError(f"adaptive schedule: need 1 <= min_interval <= max_interval, got {min_interval}, "
                             f"{max_interval}")
        self.threshold, self.signal = float(threshold), signal
        self.max_interval, self.min_interval = int(max_interval), int(min_interval)

    def due(self, since: int) -> bool:
        return since >= self.max_interval

    def decide(self, score: float, since: int) -> bool:
        return since >= self.min_interval and score > self.threshold

    def describe(self) -> str:
        return (f"adaptive:{self.threshold:g},signal={self.signal},min={self.min_interval},"
                f"max={self.max_interval}")


class Budget(KeyframeSchedule):
    """Keep the keyframe fraction near ``fraction`` and place keyframes where the distortion is highest.

    A credit grows by ``fraction`` every frame and a keyframe spends 1: the credit is how many
    keyframes the video is owed. A frame becomes a keyframe when its statistic passes a threshold,
    as long as that leaves the video at most ``slack`` keyframes ahead of its budget; it is one,
    whatever its statistic, once the video is ``slack`` keyframes behind. The threshold moves after
    every frame, in log space, up by ``rate`` after a keyframe and down by ``rate``·fraction/(1 −
    fraction) after another frame: it settles where keyframes come at the target rate, so the slack
    is spent on the frames whose distortion is highest. After n frames the count of keyframes stays
    within fraction·n ± (slack + 1): over a long video the fraction converges to the target.
    """

    def __init__(self, fraction: float, signal: str = "mean", slack: float = 2.0, rate: float = 0.05,
                 initial_threshold: float = 0.1):
        if not 0.0 < fraction <= 1.0:
            raise ValueError(f"budget schedule: fraction must be in (0, 1], got {fraction}")
        if signal not in SIGNALS:
            raise ValueError(f"unknown distortion signal {signal!r}; one of {', '.join(SIGNALS)}")
        if slack < 1.0:
            raise ValueError(f"budget schedule: slack must be >= 1 keyframe, got {slack}")
        self.fraction, self.signal, self.slack, self.rate = float(fraction), signal, float(slack), float(rate)
        self.initial_threshold = float(initial_threshold)
        self.reset()

    def reset(self) -> None:
        self.credit = 0.0
        self.log_threshold = math.log(self.initial_threshold)

    @property
    def threshold(self) -> float:
        return math.exp(self.log_threshold)

    def due(self, since: int) -> bool:
        return self.credit + self.fraction >= self.slack

    def decide(self, score: float, since: int) -> bool:
        return self.credit + self.fraction - 1.0 >= -self.slack and score > self.threshold

    def update(self, keyframe: bool) -> None:
        self.credit += self.fraction - (1.0 if keyframe else 0.0)
        if self.fraction < 1.0:
            self.log_threshold += self.rate if keyframe else -self.rate * self.fraction / (1.0 - self.fraction)

    def describe(self) -> str:
        return f"budget:{self.fraction:g},signal={self.signal}"


def parse_schedule(text: str) -> KeyframeSchedule:
    """``fixed:K``, ``adaptive:THRESHOLD[,max=N][,min=N][,signal=S]`` or ``budget:FRACTION[,signal=S]``."""
    kind, _, rest = text.partition(":")
    parts = [p for p in rest.split(",") if p]
    if not parts:
        raise ValueError(f"schedule {text!r}: give a value after the colon, e.g. fixed:5, adaptive:0.3, budget:0.2")
    options = dict(p.split("=", 1) for p in parts[1:] if "=" in p)
    if len(options) != len(parts) - 1:
        raise ValueError(f"schedule {text!r}: options after the value are key=value")
    try:
        if kind == "fixed" and not options:
            return Fixed(int(parts[0]))
        if kind == "adaptive" and set(options) <= {"max", "min", "signal"}:
            return Adaptive(float(parts[0]), int(options.get("max", 30)), int(options.get("min", 1)),
                            options.get("signal", "mean"))
        if kind == "budget" and set(options) <= {"signal"}:
            return Budget(float(parts[0]), options.get("signal", "mean"))
    except ValueError as err:
        raise ValueError(f"schedule {text!r}: {err}") from None
    raise ValueError(f"schedule {text!r}: expected fixed:K, adaptive:T[,max=N][,min=N][,signal=S] or "
                     f"budget:F[,signal=S]")

