"""The table of primitives a scene is made of, their motion, and the random streams that place them.

A primitive is an axis-aligned box or ellipsoid (world metres: X right, Y up, Z forward) with a
class, a shading program (its *kind*) and a trajectory ``offset(t) = vel·t + osc·sin(freq·t + phase)``
(one time unit = one frame). Row 0 of every table is the ground plane.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .classes import ROAD

BOX, ELLIPSOID = 0, 1
# primitive kinds (shading programs)
K_GROUND, K_BUILDING, K_WALL, K_FENCE, K_POLE, K_SIGN, K_LIGHT, K_TRUNK, K_CANOPY, K_HEDGE, \
    K_CAR, K_CABIN, K_PERSON, K_SKY = range(14)


class PrimitiveTable:
    """Accumulates primitives, then freezes them into arrays.

    Columns: ``shape`` (BOX / ELLIPSOID), ``kind``, ``cls`` (trainId), ``lo`` / ``hi`` (box corners
    at t = 0), ``vel``, ``osc``, ``freq``, ``phase`` (trajectory), ``color`` / ``color2`` (RGB in
    [0, 1]), ``params`` (up to 8 shader parameters) and ``tex`` (texture seed).
    """

    def __init__(self) -> None:
        self.rows: list[tuple] = []
        # index 0 is the ground plane (never ray-cast as a box)
        self.add(K_GROUND, ROAD, (0, 0, 0), (0, 0, 0), (0, 0, 0))

    def add(self, kind: int, cls: int, lo: Sequence[float], hi: Sequence[float], color: Sequence[float],
            color2: Sequence[float] = (0, 0, 0), params: Sequence[float] = (), vel: Sequence[float] = (0, 0, 0),
            osc: Sequence[float] = (0, 0, 0), freq: float = 0.0, phase: float = 0.0, shape: int = BOX,
            tex: int = 0) -> None:
        """Append one primitive (the columns of the class docstring; ``params`` padded to 8)."""
        p = np.zeros(8)
        p[:len(params)] = params
        self.rows.append((shape, kind, cls, lo, hi, vel, osc, freq, phase, color, color2, p, tex))

    def freeze(self) -> dict[str, np.ndarray]:
        """The columns as arrays with one row per primitive."""
        cols = list(zip(*self.rows))
        return {
            "shape": np.array(cols[0], np.int8), "kind": np.array(cols[1], np.int16),
            "cls": np.array(cols[2], np.uint8),
            "lo": np.array(cols[3], np.float64), "hi": np.array(cols[4], np.float64),
            "vel": np.array(cols[5], np.float64), "osc": np.array(cols[6], np.float64),
            "freq": np.array(cols[7], np.float64), "phase": np.array(cols[8], np.float64),
            "color": np.array(cols[9], np.float32), "color2": np.array(cols[10], np.float32),
            "params": np.array(cols[11], np.float32), "tex": np.array(cols[12], np.int64),
        }


def scene_rng(seed: int, stream: int) -> np.random.Generator:
    """Random stream ``stream`` of scene ``seed``: each part of the scene draws from its own stream,
    so adding to one part does not shift the others."""
    return np.random.default_rng([seed, stream])


def primitive_offsets(scene: dict, t: float) -> np.ndarray:
    """Displacement (N, 3) of every primitive at time t relative to its t=0 placement."""
    return scene["vel"] * t + scene["osc"] * np.sin(scene["freq"] * t + scene["phase"])[:, None]
