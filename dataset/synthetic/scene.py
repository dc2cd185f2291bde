"""The random street scene of a clip: camera path, road cross-section, lighting style, primitives.

World axes: X right, Y up, Z forward; metres; one time unit = one frame. A scene is

* the ground plane Y = 0, split into zones by (X, Z): road (asphalt, lane markings, zebra
  crossings), sidewalks (paving tiles, kerb stones), grass in parks, front yards and verges;
* along each side, lots (buildings, side streets, parks, walls) and street furniture
  (:mod:`.street`);
* parked, leading, overtaking and oncoming cars and walking pedestrians (:mod:`.traffic`);
* sky at infinity: gradient and clouds, a function of the viewing direction only.

:func:`build_scene` returns the frozen primitive table (:mod:`.primitives`) plus the dicts ``cam``
(camera path, :mod:`.camera`), ``road`` (cross-section, lots), ``style`` (sun, ambient light,
exposure, fog, sky) and the Z positions of the zebra ``crossings``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from .camera import camera_z
from .primitives import PrimitiveTable, scene_rng
from .street import add_street_side
from .traffic import add_pedestrians, add_traffic


def build_scene(seed: int, num_frames: int) -> dict[str, Any]:
    """Random scene and camera path of a clip; depends on ``seed`` only for clips of ≤ 64 frames."""
    horizon_frames = max(int(num_frames), 64)
    r = scene_rng(seed, 0)
    cam: dict[str, float] = {}
    slow = r.random() < 0.08
    cam["speed"] = r.uniform(0.03, 0.12) if slow else r.uniform(0.22, 0.5)  # m/frame
    cam["accel"] = r.uniform(-0.3, 0.3) * cam["speed"] / horizon_frames
    cam["height"] = r.uniform(1.25, 1.6)
    cam["focal"] = r.uniform(1.0, 1.2)  # focal length / image width
    cam["horizon"] = r.uniform(0.38, 0.46)  # horizon row / image height
    cam["sway_amp"], cam["sway_w"], cam["sway_ph"] = r.uniform(0, 0.25), r.uniform(0.03, 0.1), r.uniform(0, 6.3)
    cam["yaw_amp"], cam["yaw_w"], cam["yaw_ph"] = \
        math.radians(r.uniform(0, 1.5)), r.uniform(0.04, 0.15), r.uniform(0, 6.3)
    cam["pitch_amp"], cam["pitch_w"], cam["pitch_ph"] = \
        math.radians(r.uniform(0, 0.3)), r.uniform(0.2, 0.6), r.uniform(0, 6.3)
    cam["bounce"] = r.uniform(0, 0.015)

    # road cross-section (camera drives on the right, oncoming traffic on the left)
    lane_w = r.uniform(3.0, 3.6)
    n_right = int(r.integers(1, 3))
    n_left = int(r.integers(1, 3))
    park_r = 2.3 if r.random() < 0.65 else 0.0
    park_l = 2.3 if r.random() < 0.5 else 0.0
    road = {
        "lane_w": lane_w, "n_right": n_right, "n_left": n_left, "park_r": park_r, "park_l": park_l,
        "right": n_right * lane_w + park_r, "left": -(n_left * lane_w + park_l),
        "walk_r": r.uniform(2.5, 5.0), "walk_l": r.uniform(2.5, 5.0),
        "tile": r.uniform(0.35, 0.9), "asphalt": r.uniform(0.28, 0.42),
        "paving": r.uniform(0.52, 0.70), "double_centre": r.random() < 0.5,
        "yellow_centre": r.random() < 0.3, "dash": r.uniform(2.0, 4.0), "period": r.uniform(8.0, 12.0),
    }
    for side in ("r", "l"):  # grass verge between the kerb and the footway
        road["verge_" + side] = r.uniform(0.8, 2.0) if r.random() < 0.35 else 0.0
        road["walk_" + side] = max(road["walk_" + side], road["verge_" + side] + 2.2)
    cam_lane = int(r.integers(0, n_right))
    cam["x0"] = (cam_lane + 0.5) * lane_w + r.uniform(-0.25, 0.25)

    style = {
        "sun": _unit((r.uniform(-1, 1), r.uniform(0.35, 1.2), r.uniform(-0.6, 1.0))),
        "ambient": r.uniform(0.45, 0.7), "exposure": r.uniform(0.85, 1.1),
        "tint": r.uniform(0.93, 1.07, size=3), "fog": r.uniform(120.0, 260.0),
        "overcast": r.random() < 0.3, "cloud": r.uniform(0.2, 0.6),
        "sky_top": np.array([r.uniform(0.25, 0.45), r.uniform(0.45, 0.6), r.uniform(0.75, 0.95)]),
        "noise_seed": int(r.integers(0, 2**31)),
    }
    if style["overcast"]:
        g = r.uniform(0.6, 0.8)
        style["sky_top"] = np.array([g, g, g + 0.03])
        style["ambient"] = r.uniform(0.7, 0.85)
    style["haze"] = np.clip(style["sky_top"] * 0.5 + 0.45, 0, 1)

    travel = camera_z(cam, horizon_frames)
    z_end = travel + 230.0
    prims = PrimitiveTable()
    crossings: list[float] = []
    for side, stream in ((1, 1), (-1, 2)):
        add_street_side(prims, scene_rng(seed, stream), scene_rng(seed, stream + 10), side, road, z_end, crossings)
    add_traffic(prims, seed, road, cam, horizon_frames, z_end)
    add_pedestrians(prims, seed, road, cam, horizon_frames, z_end, crossings)
    scene = prims.freeze()
    scene["cam"] = cam
    scene["road"] = road
    scene["style"] = style
    scene["crossings"] = np.array(sorted(crossings) or [-1e9])
    return scene


def _unit(v: Sequence[float]) -> np.ndarray:
    """``v`` scaled to unit length."""
    v = np.asarray(v, np.float64)
    return v / np.linalg.norm(v)
