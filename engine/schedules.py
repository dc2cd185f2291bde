"""Learning-rate schedules of the trainer, as ``LambdaLR`` factors built from the config (``optim.schedule``).

The factors are rebuilt from the config on resume (see :meth:`engine.trainer.Trainer._resume`), so
that extending ``train.iters`` stretches the schedule instead of keeping the old one.
"""
from __future__ import annotations

import math


class HalfStepFactor:
    """LambdaLR factor of DAVSS's schedule: 1, then 0.1 once more than half of ``total`` steps are done."""

    def __init__(self, total: int):
        self.total = max(1, int(total))

    def __call__(self, step: int) -> float:
        return 0.1 if step > self.total / 2 else 1.0


class CosineFactor:
    """LambdaLR factor: cosine from ``base_lr`` to ``min_lr`` over ``total`` steps, then flat."""

    def __init__(self, base_lr: float, min_lr: float, total: int):
        self.base_lr, self.min_lr, self.total = float(base_lr), float(min_lr), max(1, int(total))

    def __call__(self, step: int) -> float:
        t = min(step, self.total) / self.total
        lr = self.min_lr + (self.base_lr - self.min_lr) * 0.5 * (1.0 + math.cos(math.pi * t))
        return lr / self.base_lr if self.base_lr > 0 else 0.0
