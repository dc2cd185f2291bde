"""Synthetic driving video with exact labels and exact optical flow: the embedded default data set.

Scene model
-----------
Each clip is a parametric 3-D street scene seen by a pinhole camera that drives forward along the
street (world axes: X right, Y up, Z forward; metres; one time unit = one frame):

* ground plane Y = 0, split into zones by (X, Z): road (asphalt noise, lane markings, zebra
  crossings), sidewalks (paving tiles, kerb stones), grass (terrain) in parks and front yards,
  side streets that cut through the sidewalk;
* along each side, a sequence of lots: buildings (axis-aligned boxes, random height and setback,
  façades with window grids, shop fronts and floor bands), side streets (a far building seen through
  the gap), parks (trees, hedges, fences) and walls;
* street furniture: poles, some with a traffic sign or a traffic light, street trees
  (box trunk + ellipsoid canopy);
* traffic: parked cars, cars ahead in the camera's lane, cars overtaking from behind in a
  neighbouring lane (they enter the image from the side), oncoming cars, each a body and a cabin box;
* pedestrians on the sidewalks and crossing the road, each a torso, a head and two legs that swing
  relative to the body (non-rigid motion);
* sky at infinity: gradient and clouds, a function of the viewing direction only.

Every primitive has a trajectory ``offset(t) = v·t + a·sin(ω·t + φ)``; the camera moves forward
(randomised speed, slight acceleration, lateral sway, yaw and pitch oscillation). A frame is rendered
by casting one ray per pixel centre against the ground plane and the primitives in their screen-space
bounding boxes (nearest hit wins); textures are evaluated in each surface's own coordinates, so they
move with the surface, and shading depends only on the surface normal, so colours are constant over
time except for a faint distance haze.

Because each pixel's scene point is known, its position in any other frame s is known as well:
``P_s = P_t + offset_k(s) − offset_k(t)`` for primitive k, projected with camera s (sky: the viewing
direction, projected with camera s's rotation). That gives the exact backward flow (frame t → t−1),
forward flow (t → t+1), the flow between any two frames (not composed), and occlusion masks by a
depth test against the other frame's depth buffer.

Labels are rendered in the 19 Cityscapes trainIds (used: road, sidewalk, building, wall, fence,
pole, traffic light, traffic sign, vegetation, terrain, sky, person, car) and mapped to the 11
CamVid classes on request. Every pixel gets a class; no ignore values are produced.

Flow convention: ``flow[:, y, x] = (dx, dy)`` in pixels, pixel centres at integer coordinates; the
pixel (x, y) of the source frame is found at (x + dx, y + dy) in the target frame, so sampling the
target frame at those positions (``grid_sample`` / Resample2d style backward warping) reproduces the
source frame.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from .edges import edge_label
from .labels import CAMVID, CITYSCAPES, ClassSet, HasClasses, colorize

__all__ = [
    "TRAINID_TO_CAMVID",
    "TRAINID_TO_LABELID",
    "SyntheticVideoDataset",
    "clip_seed",
    "flow_to_color",
    "render_clip",
    "render_flow",
    "save_preview",
    "write_camvid_layout",
    "write_cityscapes_layout",
    "write_segnet_layout",
]

# --------------------------------------------------------------------------------------------
# Classes
# --------------------------------------------------------------------------------------------
ROAD, SIDEWALK, BUILDING, WALL, FENCE, POLE, LIGHT, SIGN, VEGETATION, TERRAIN, SKY, PERSON, RIDER, \
    CAR, TRUCK, BUS, TRAIN, MOTORCYCLE, BICYCLE = range(19)

#: trainId (0..18, 255) → CamVid 11-class id (0..10, 11 = void).
TRAINID_TO_CAMVID = np.full(256, 11, dtype=np.uint8)
TRAINID_TO_CAMVID[:19] = [3, 4, 1, 1, 7, 2, 6, 6, 5, 5, 0, 9, 10, 8, 8, 8, 8, 10, 10]
#: trainId (0..18, 255) → Cityscapes labelId (first labelId of the class; ignore → 0).
TRAINID_TO_LABELID = np.zeros(256, dtype=np.uint8)
TRAINID_TO_LABELID[:19] = [7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33]

SPLIT_CODES = {"train": 0, "val": 1, "test": 2}


def clip_seed(split: str, index: int, seed: int = 0) -> int:
    """Seed of clip ``index`` of a split; the seeds of different splits never coincide."""
    if split not in SPLIT_CODES:
        raise ValueError(f"split must be one of {sorted(SPLIT_CODES)}, got {split!r}")
    if index < 0 or seed < 0:
        raise ValueError("clip index and seed must be non-negative")
    return ((seed * 1_000_003 + index) * 4) + SPLIT_CODES[split]


def _class_set(num_classes: int) -> ClassSet:
    if num_classes == 19:
        return CITYSCAPES
    if num_classes == 11:
        return CAMVID
    raise ValueError(f"num_classes must be 19 (Cityscapes) or 11 (CamVid), got {num_classes}")


# --------------------------------------------------------------------------------------------
# Procedural noise (vectorised, deterministic)
# --------------------------------------------------------------------------------------------
_NOISE_N = 256
#: fixed random lattice (a constant of the generator: every clip samples it at seed-dependent offsets)
_NOISE = np.random.default_rng(0x5EED).random((_NOISE_N + 1, _NOISE_N + 1), dtype=np.float32)
_NOISE[_NOISE_N, :] = _NOISE[0, :]
_NOISE[:, _NOISE_N] = _NOISE[:, 0]
_NOISE_FLAT = _NOISE.reshape(-1)


def _seed_offsets(seed: np.ndarray | int) -> tuple[np.ndarray, np.ndarray]:
    """Integer lattice offsets in [0, 256) that select a seed's region of the noise lattice."""
    s = np.asarray(seed).astype(np.int64) & 0x7FFFFFFF
    return (s * 0x9E3779B1 >> 11) & (_NOISE_N - 1), (s * 0x85EBCA77 >> 13) & (_NOISE_N - 1)


def _hash(ix: np.ndarray, iy: np.ndarray, seed: np.ndarray | int) -> np.ndarray:
    """Uniform [0, 1) float32 per integer lattice cell (any shape) and seed; period 256 cells."""
    ox, oy = _seed_offsets(seed)
    jx = (np.asarray(ix).astype(np.int64) + ox) & (_NOISE_N - 1)
    jy = (np.asarray(iy).astype(np.int64) + oy) & (_NOISE_N - 1)
    return _NOISE_FLAT[jy * (_NOISE_N + 1) + jx]


def _noise(x: np.ndarray, y: np.ndarray, seed: np.ndarray | int) -> np.ndarray:
    """Smooth value noise in [0, 1] on a unit lattice (period 256)."""
    ox, oy = _seed_offsets(seed)
    fx, fy = np.floor(x), np.floor(y)
    tx, ty = x - fx, y - fy
    tx = tx * tx * (3 - 2 * tx)
    ty = ty * ty * (3 - 2 * ty)
    i = ((fy.astype(np.int64) + oy) & (_NOISE_N - 1)) * (_NOISE_N + 1) + ((fx.astype(np.int64) + ox) & (_NOISE_N - 1))
    a = _NOISE_FLAT[i]
    b = _NOISE_FLAT[i + 1]
    c = _NOISE_FLAT[i + (_NOISE_N + 1)]
    d = _NOISE_FLAT[i + (_NOISE_N + 2)]
    top = a + (b - a) * tx
    bottom = c + (d - c) * tx
    return top + (bottom - top) * ty


def _detail(footprint: np.ndarray, wavelength: float) -> np.ndarray:
    """Weight of a texture detail of ``wavelength`` metres given the pixel footprint (anti-aliasing):
    1 while a period spans ≥ 4 pixels, 0 below ~1.3 pixels."""
    return np.clip(1.5 - 2.0 * footprint / wavelength, 0.0, 1.0).astype(np.float32)


def _fbm(x: np.ndarray, y: np.ndarray, seed: np.ndarray | int, scale: float, octaves: int,
         footprint: np.ndarray) -> np.ndarray:
    """Fractal noise in about [-0.5, 0.5]: octaves of wavelength scale, scale/2, ...; octaves too
    fine for the pixel footprint fade out."""
    total = np.zeros(np.shape(x), dtype=np.float32)
    amp, wavelength = 1.0, scale
    for octave in range(octaves):
        weight = amp * _detail(footprint, wavelength)
        if np.any(weight > 0):
            total += weight * (_noise(x / wavelength, y / wavelength, np.asarray(seed) + 7919 * octave) - 0.5)
        amp *= 0.55
        wavelength *= 0.5
    return total


def _band(distance: np.ndarray, half_width: float, footprint: np.ndarray) -> np.ndarray:
    """Anti-aliased coverage of a stripe: 1 inside ``|distance| < half_width``, soft over one pixel."""
    return np.clip((half_width - np.abs(distance)) / np.maximum(footprint, 1e-6) + 0.5, 0.0, 1.0)


def _frac(x: np.ndarray) -> np.ndarray:
    return x - np.floor(x)


# --------------------------------------------------------------------------------------------
# Scene description
# --------------------------------------------------------------------------------------------
BOX, ELLIPSOID = 0, 1
# primitive kinds (shading programs)
K_GROUND, K_BUILDING, K_WALL, K_FENCE, K_POLE, K_SIGN, K_LIGHT, K_TRUNK, K_CANOPY, K_HEDGE, \
    K_CAR, K_CABIN, K_PERSON, K_SKY = range(14)

NEAR = 0.05  # nearest accepted hit (m)


class _Prims:
    """Accumulates primitives, then freezes them into arrays."""

    def __init__(self) -> None:
        self.rows: list[tuple] = []
        # index 0 is the ground plane (never ray-cast as a box)
        self.add(K_GROUND, ROAD, (0, 0, 0), (0, 0, 0), (0, 0, 0))

    def add(self, kind: int, cls: int, lo: Sequence[float], hi: Sequence[float], color: Sequence[float],
            color2: Sequence[float] = (0, 0, 0), params: Sequence[float] = (), vel: Sequence[float] = (0, 0, 0),
            osc: Sequence[float] = (0, 0, 0), freq: float = 0.0, phase: float = 0.0, shape: int = BOX,
            tex: int = 0) -> None:
        p = np.zeros(8)
        p[:len(params)] = params
        self.rows.append((shape, kind, cls, lo, hi, vel, osc, freq, phase, color, color2, p, tex))

    def freeze(self) -> dict[str, np.ndarray]:
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


_FACADE_COLORS = np.array([
    (0.78, 0.72, 0.60), (0.62, 0.34, 0.26), (0.60, 0.60, 0.58), (0.86, 0.85, 0.80), (0.40, 0.37, 0.35),
    (0.80, 0.70, 0.45), (0.55, 0.62, 0.68), (0.70, 0.55, 0.45), (0.50, 0.45, 0.40), (0.72, 0.66, 0.62),
])
_CAR_COLORS = np.array([
    (0.85, 0.85, 0.85), (0.08, 0.08, 0.09), (0.55, 0.56, 0.58), (0.60, 0.10, 0.08), (0.12, 0.22, 0.50),
    (0.30, 0.32, 0.34), (0.75, 0.70, 0.55), (0.15, 0.35, 0.20), (0.90, 0.80, 0.20), (0.35, 0.15, 0.10),
])
_CLOTH_COLORS = np.array([
    (0.10, 0.10, 0.12), (0.20, 0.25, 0.45), (0.55, 0.10, 0.10), (0.80, 0.78, 0.72), (0.35, 0.35, 0.30),
    (0.15, 0.35, 0.25), (0.60, 0.45, 0.25), (0.85, 0.55, 0.15), (0.45, 0.20, 0.45), (0.25, 0.25, 0.25),
])
_SKIN_COLORS = np.array([(0.85, 0.68, 0.55), (0.65, 0.47, 0.35), (0.42, 0.30, 0.22), (0.93, 0.78, 0.66)])


def _rng(seed: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([seed, stream])


def _build_scene(seed: int, num_frames: int) -> dict[str, Any]:
    """Random scene and camera path of a clip; depends on ``seed`` only for clips of ≤ 64 frames."""
    horizon_frames = max(int(num_frames), 64)
    r = _rng(seed, 0)
    cam: dict[str, float] = {}
    slow = r.random() < 0.08
    cam["speed"] = r.uniform(0.03, 0.12) if slow else r.uniform(0.22, 0.5)  # m/frame
    cam["accel"] = r.uniform(-0.3, 0.3) * cam["speed"] / horizon_frames
    cam["height"] = r.uniform(1.25, 1.6)
    cam["focal"] = r.uniform(1.0, 1.2)  # focal length / image width
    cam["horizon"] = r.uniform(0.38, 0.46)  # horizon row / image height
    cam["sway_amp"], cam["sway_w"], cam["sway_ph"] = r.uniform(0, 0.25), r.uniform(0.03, 0.1), r.uniform(0, 6.3)
    cam["yaw_amp"], cam["yaw_w"], cam["yaw_ph"] = math.radians(r.uniform(0, 1.5)), r.uniform(0.04, 0.15), r.uniform(0, 6.3)
    cam["pitch_amp"], cam["pitch_w"], cam["pitch_ph"] = math.radians(r.uniform(0, 0.3)), r.uniform(0.2, 0.6), r.uniform(0, 6.3)
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

    travel = _cam_z(cam, horizon_frames)
    z_end = travel + 230.0
    prims = _Prims()
    crossings: list[float] = []
    for side, stream in ((1, 1), (-1, 2)):
        _build_side(prims, _rng(seed, stream), _rng(seed, stream + 10), side, road, z_end, crossings)
    _build_traffic(prims, seed, road, cam, horizon_frames, z_end)
    _build_pedestrians(prims, seed, road, cam, horizon_frames, z_end, crossings)
    scene = prims.freeze()
    scene["cam"] = cam
    scene["road"] = road
    scene["style"] = style
    scene["crossings"] = np.array(sorted(crossings) or [-1e9])
    return scene


def _unit(v: Sequence[float]) -> np.ndarray:
    v = np.asarray(v, np.float64)
    return v / np.linalg.norm(v)


def _cam_z(cam: dict[str, float], t: float) -> float:
    return cam["speed"] * t + 0.5 * cam["accel"] * t * t


def _build_side(prims: _Prims, r: np.random.Generator, rf: np.random.Generator, side: int,
                road: dict, z_end: float, crossings: list[float]) -> None:
    """Lots (buildings, side streets, parks, walls) and street furniture along one side."""
    edge = road["right"] if side > 0 else -road["left"]  # |x| of the kerb
    walk = road["walk_r"] if side > 0 else road["walk_l"]
    back = edge + walk  # |x| of the sidewalk's back edge

    def xr(a: float, b: float) -> tuple[float, float]:
        """World x-interval of |x| in [a, b] on this side."""
        return (a, b) if side > 0 else (-b, -a)

    lots: list[tuple[float, float, int, float]] = []  # z0, z1, type, yard (0 paving, 1 grass)
    z = -45.0
    while z < z_end:
        u = r.random()
        if u < 0.62:
            kind, length = 0, r.uniform(9, 32)  # building
        elif u < 0.74:
            kind, length = 1, r.uniform(9, 14)  # side street
        elif u < 0.92:
            kind, length = 2, r.uniform(12, 35)  # park
        else:
            kind, length = 3, r.uniform(8, 20)  # wall with building behind
        z0, z1 = z, z + length
        yard = 0.0
        if kind == 0:
            setback = r.uniform(0, 4) if r.random() < 0.5 else 0.0
            yard = float(r.random() < 0.4 and setback > 1.0)
            h = r.uniform(6, 30) if r.random() < 0.85 else r.uniform(30, 50)
            depth = r.uniform(10, 25)
            gap = r.uniform(0, 1.5) if r.random() < 0.3 else 0.0
            _add_building(prims, r, xr(back + setback, back + setback + depth), (z0 + gap, z1), h, side)
        elif kind == 1:
            crossings.append(0.5 * (z0 + z1))
            far = back + r.uniform(25, 60)
            _add_building(prims, r, xr(far, far + 20), (z0 - 10, z1 + 10), r.uniform(8, 35), side)
        elif kind == 2:
            yard = 1.0
            far = back + r.uniform(15, 40)
            if r.random() < 0.8:
                _add_building(prims, r, xr(far, far + 20), (z0, z1), r.uniform(10, 40), side)
            border = r.random()
            if border < 0.35:
                hh = r.uniform(0.7, 1.4)
                prims.add(K_HEDGE, VEGETATION, (xr(back + 0.2, back + 1.1)[0], 0, z0 + 0.5),
                          (xr(back + 0.2, back + 1.1)[1], hh, z1 - 0.5), _leaf_color(r), tex=int(r.integers(1 << 30)))
            elif border < 0.65:
                fh = r.uniform(1.0, 2.0)
                x0, x1 = xr(back + 0.1, back + 0.16)
                col = (r.uniform(0.25, 0.6),) * 3 if r.random() < 0.5 else (0.45, 0.32, 0.2)
                prims.add(K_FENCE, FENCE, (x0, 0, z0 + 0.3), (x1, fh, z1 - 0.3), col,
                          params=(r.uniform(0.12, 0.25), r.uniform(0.3, 0.6)), tex=int(r.integers(1 << 30)))
            for _ in range(int(r.integers(1, 5))):
                tz = r.uniform(z0 + 2, z1 - 2)
                _add_tree(prims, r, side * (back + r.uniform(2.5, 10)), tz, big=True)
        else:
            wh = r.uniform(1.2, 2.6)
            x0, x1 = xr(back + 0.1, back + 0.45)
            base = r.uniform(0.45, 0.75)
            prims.add(K_WALL, WALL, (x0, 0, z0), (x1, wh, z1), (base, base * 0.97, base * 0.92),
                      params=(r.uniform(0.2, 0.5),), tex=int(r.integers(1 << 30)))
            far = back + r.uniform(6, 15)
            _add_building(prims, r, xr(far, far + 18), (z0, z1), r.uniform(8, 30), side)
        lots.append((z0, z1, kind, yard))
        z = z1

    key = "lots_r" if side > 0 else "lots_l"
    road[key] = np.array(lots)

    # street furniture on the sidewalk (its own random stream: lots do not shift it)
    z = -40.0 + rf.uniform(0, 10)
    while z < z_end:
        lot = lots[int(np.searchsorted([l[0] for l in lots], z, side="right")) - 1]
        u = rf.random()
        if lot[2] != 1 or not (lot[0] + 0.5 < z < lot[1] - 0.5):
            if u < 0.55:
                _add_pole(prims, rf, side * (edge + 0.45), z, side)
            elif u < 0.8:
                verge = road["verge_r"] if side > 0 else road["verge_l"]
                tx = edge + 0.25 + 0.5 * verge if verge > 0 else edge + min(1.3, 0.5 * walk)
                _add_tree(prims, rf, side * tx, z, big=False)
        z += rf.uniform(9, 28)


def _leaf_color(r: np.random.Generator) -> tuple[float, float, float]:
    g = r.uniform(0.28, 0.45)
    return (g * r.uniform(0.45, 0.75), g, g * r.uniform(0.25, 0.45))


def _add_building(prims: _Prims, r: np.random.Generator, xs: tuple[float, float], zs: tuple[float, float],
                  height: float, side: int) -> None:
    color = _FACADE_COLORS[int(r.integers(len(_FACADE_COLORS)))] * r.uniform(0.85, 1.1, size=3)
    office = r.random() < 0.2
    floor_h = r.uniform(2.8, 3.8)
    spacing = r.uniform(1.6, 2.4) if office else r.uniform(2.2, 3.6)
    win_w = r.uniform(0.7, 0.9) if office else r.uniform(0.35, 0.6)
    win_h = r.uniform(0.6, 0.8) if office else r.uniform(0.4, 0.6)
    glass = np.array((0.12, 0.16, 0.22)) * r.uniform(0.8, 1.6)
    shop = float(r.random() < 0.6)
    prims.add(K_BUILDING, BUILDING, (xs[0], 0, zs[0]), (xs[1], height, zs[1]), np.clip(color, 0, 1), glass,
              params=(floor_h, spacing, win_w, win_h, shop, r.uniform(0, spacing), float(office),
                      r.uniform(0.03, 0.1)),
              tex=int(r.integers(1 << 30)))


def _add_tree(prims: _Prims, r: np.random.Generator, x: float, z: float, big: bool) -> None:
    trunk_h = r.uniform(1.8, 3.2) if big else r.uniform(1.8, 2.6)
    tw = r.uniform(0.2, 0.4)
    prims.add(K_TRUNK, VEGETATION, (x - tw / 2, 0, z - tw / 2), (x + tw / 2, trunk_h + 0.5, z + tw / 2),
              (r.uniform(0.25, 0.4), r.uniform(0.18, 0.26), r.uniform(0.1, 0.16)), tex=int(r.integers(1 << 30)))
    rx = r.uniform(1.8, 3.2) if big else r.uniform(1.1, 1.9)
    ry = rx * r.uniform(0.9, 1.5)
    rz = rx * r.uniform(0.8, 1.2)
    cy = trunk_h + ry * 0.85
    prims.add(K_CANOPY, VEGETATION, (x - rx, cy - ry, z - rz), (x + rx, cy + ry, z + rz), _leaf_color(r),
              shape=ELLIPSOID, tex=int(r.integers(1 << 30)))


def _add_pole(prims: _Prims, r: np.random.Generator, x: float, z: float, side: int) -> None:
    h = r.uniform(3.5, 7.5)
    w = r.uniform(0.14, 0.22)
    grey = r.uniform(0.3, 0.6)
    prims.add(K_POLE, POLE, (x - w / 2, 0, z - w / 2), (x + w / 2, h, z + w / 2), (grey, grey, grey * 1.03),
              tex=int(r.integers(1 << 30)))
    u = r.random()
    if u < 0.45:  # traffic sign facing the camera
        s = r.uniform(0.6, 0.9)
        y0 = r.uniform(2.0, max(2.1, h - s - 0.2))
        scheme = int(r.integers(4))
        inner, border = [((0.1, 0.3, 0.7), (0.9, 0.9, 0.9)), ((0.9, 0.9, 0.9), (0.75, 0.1, 0.1)),
                         ((0.95, 0.8, 0.1), (0.1, 0.1, 0.1)), ((0.1, 0.45, 0.2), (0.9, 0.9, 0.9))][scheme]
        prims.add(K_SIGN, SIGN, (x - s / 2, y0, z - 0.2), (x + s / 2, y0 + s, z - 0.14), inner, border,
                  params=(float(r.random() < 0.5),), tex=int(r.integers(1 << 30)))
    elif u < 0.65 and h > 4.0:  # traffic light on top, shifted over the road
        lx = x - side * r.uniform(0.0, 0.3)
        prims.add(K_LIGHT, LIGHT, (lx - 0.18, h - 1.05, z - 0.35), (lx + 0.18, h - 0.05, z - 0.1),
                  (0.08, 0.08, 0.08), params=(float(r.integers(3)),), tex=int(r.integers(1 << 30)))


def _add_car(prims: _Prims, r: np.random.Generator, x: float, z: float, vz: float, heading: int) -> None:
    """Car centred at (x, z) at t=0, moving vz m/frame along Z; heading +1 faces +Z."""
    van = r.random() < 0.15
    length = r.uniform(4.6, 5.3) if van else r.uniform(3.8, 4.8)
    width = r.uniform(1.7, 1.95)
    body_h = r.uniform(1.7, 2.0) if van else r.uniform(0.9, 1.1)
    color = _CAR_COLORS[int(r.integers(len(_CAR_COLORS)))] * r.uniform(0.9, 1.1)
    color = np.clip(color, 0, 1)
    tex = int(r.integers(1 << 30))
    lo = (x - width / 2, 0.0, z - length / 2)
    hi = (x + width / 2, body_h, z + length / 2)
    prims.add(K_CAR, CAR, lo, hi, color, params=(heading, float(van)), vel=(0, 0, vz), tex=tex)
    if not van:
        cabin_h = r.uniform(0.42, 0.55)
        cl = length * r.uniform(0.45, 0.58)
        shift = -heading * length * r.uniform(0.02, 0.1)
        prims.add(K_CABIN, CAR, (x - width / 2 + 0.1, body_h, z - cl / 2 + shift),
                  (x + width / 2 - 0.1, body_h + cabin_h, z + cl / 2 + shift), color, params=(heading,),
                  vel=(0, 0, vz), tex=tex)


def _build_traffic(prims: _Prims, seed: int, road: dict, cam: dict, frames: int, z_end: float) -> None:
    lane_w = road["lane_w"]
    speed = cam["speed"]
    # parked cars
    for side, park, stream in ((1, road["park_r"], 20), (-1, road["park_l"], 21)):
        if park <= 0:
            continue
        r = _rng(seed, stream)
        x_edge = road["right"] if side > 0 else road["left"]
        z = -40.0 + r.uniform(0, 8)
        while z < z_end:
            if r.random() < 0.7:
                _add_car(prims, r, x_edge - side * r.uniform(1.1, 1.3), z, 0.0, int(r.choice([-1, 1])))
            z += r.uniform(5.5, 14.0)
    # own direction lanes (x > 0)
    for lane in range(road["n_right"]):
        r = _rng(seed, 30 + lane)
        xc = (lane + 0.5) * lane_w
        own = abs(xc - cam["x0"]) < lane_w / 2
        if own:  # a leader ahead, moving at about the camera's speed; more far ahead
            z = r.uniform(9, 25)
            v = speed * r.uniform(0.85, 1.15)
        else:  # overtaking cars start behind the camera
            z = -r.uniform(4, 25)
            v = speed + r.uniform(0.12, 0.35)
        while z < z_end:
            _add_car(prims, r, xc + r.uniform(-0.3, 0.3), z, v, 1)
            z += r.uniform(12, 45)
            v = v * r.uniform(0.95, 1.05)
    # oncoming lanes (x < 0)
    for lane in range(road["n_left"]):
        r = _rng(seed, 40 + lane)
        xc = -(lane + 0.5) * lane_w
        z = r.uniform(5, 40)
        while z < z_end + 0.8 * frames:
            _add_car(prims, r, xc + r.uniform(-0.3, 0.3), z, -r.uniform(0.15, 0.45), -1)
            z += r.uniform(15, 60)


def _add_person(prims: _Prims, r: np.random.Generator, x: float, z: float, vel: tuple[float, float]) -> None:
    """Pedestrian standing on (x, z) at t=0 walking with velocity (vx, vz) m/frame."""
    h = r.uniform(1.55, 1.9)
    shirt = _CLOTH_COLORS[int(r.integers(len(_CLOTH_COLORS)))]
    trousers = _CLOTH_COLORS[int(r.integers(len(_CLOTH_COLORS)))] * 0.8
    skin = _SKIN_COLORS[int(r.integers(len(_SKIN_COLORS)))]
    hair = (0.1, 0.08, 0.06) if r.random() < 0.7 else (0.5, 0.4, 0.25)
    tex = int(r.integers(1 << 30))
    vx, vz = vel
    speed = math.hypot(vx, vz)
    along_x = abs(vx) > abs(vz)
    hw, hd = (0.15, 0.24) if along_x else (0.24, 0.15)  # half-width in x, half-depth in z
    leg_top = 0.47 * h
    head = 0.13 * h
    v3 = (vx, 0.0, vz)
    prims.add(K_PERSON, PERSON, (x - hw, leg_top, z - hd), (x + hw, h - head, z + hd), shirt, params=(1,),
              vel=v3, tex=tex)
    hs = 0.1
    prims.add(K_PERSON, PERSON, (x - hs, h - head, z - hs), (x + hs, h, z + hs), skin, hair, params=(2, head),
              vel=v3, tex=tex)
    freq = 2 * math.pi * speed / r.uniform(1.2, 1.6) if speed > 0.01 else 0.0
    amp = r.uniform(0.12, 0.2) if freq > 0 else 0.0
    phase = r.uniform(0, 2 * math.pi)
    direction = np.array([vx, 0.0, vz]) / max(speed, 1e-9)
    for k, sign in enumerate((-1, 1)):
        # legs side by side across the walking direction, swinging along it in antiphase
        if along_x:
            lo = (x - 0.08, 0.0, z - 0.02 + sign * 0.1 - 0.08)
            hi = (x + 0.08, leg_top, z - 0.02 + sign * 0.1 + 0.08)
        else:
            lo = (x + sign * 0.1 - 0.08, 0.0, z - 0.08)
            hi = (x + sign * 0.1 + 0.08, leg_top, z + 0.08)
        prims.add(K_PERSON, PERSON, lo, hi, trousers, params=(0,), vel=v3, osc=tuple(direction * amp),
                  freq=freq, phase=phase + k * math.pi, tex=tex)


def _build_pedestrians(prims: _Prims, seed: int, road: dict, cam: dict, frames: int, z_end: float,
                       crossings: list[float]) -> None:
    for side, stream in ((1, 50), (-1, 51)):
        r = _rng(seed, stream)
        edge = road["right"] if side > 0 else -road["left"]
        walk = road["walk_r"] if side > 0 else road["walk_l"]
        verge = road["verge_r"] if side > 0 else road["verge_l"]
        z = -30.0 + r.uniform(0, 10)
        while z < z_end:
            n = 1 if r.random() < 0.7 else int(r.integers(2, 4))
            for _ in range(n):
                x = side * (edge + r.uniform(max(1.0, verge + 0.7), walk - 0.4))
                vz = r.choice([-1, 1]) * r.uniform(0.04, 0.09) if r.random() < 0.8 else 0.0
                _add_person(prims, r, x, z + r.uniform(-1.5, 1.5), (0.0, vz))
            z += r.uniform(5, 22)
    # pedestrians crossing the road ahead
    r = _rng(seed, 52)
    z = cam["speed"] * 30 + r.uniform(8, 30)
    while z < z_end:
        if r.random() < 0.6:
            direction = r.choice([-1, 1])
            start = road["left"] - 0.5 if direction > 0 else road["right"] + 0.5
            x = start + direction * r.uniform(0, road["right"] - road["left"])
            _add_person(prims, r, x, z, (direction * r.uniform(0.05, 0.09), 0.0))
            crossings.append(z)
        z += r.uniform(25, 70)


# --------------------------------------------------------------------------------------------
# Camera and geometry
# --------------------------------------------------------------------------------------------
class _Camera:
    """Pinhole camera of frame t: world → camera rotation, centre, intrinsics (Python floats)."""

    def __init__(self, scene: dict, t: float, height: int, width: int) -> None:
        cam = scene["cam"]
        self.f = cam["focal"] * width
        self.cx = (width - 1) / 2.0
        self.cy = (height - 1) / 2.0
        pitch0 = math.atan((0.5 - cam["horizon"]) * height / self.f)
        yaw = cam["yaw_amp"] * math.sin(cam["yaw_w"] * t + cam["yaw_ph"])
        pitch = pitch0 + cam["pitch_amp"] * math.sin(cam["pitch_w"] * t + cam["pitch_ph"])
        cp, sp, cyw, syw = math.cos(pitch), math.sin(pitch), math.cos(yaw), math.sin(yaw)
        rx = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
        ry = np.array([[cyw, 0, syw], [0, 1, 0], [-syw, 0, cyw]])
        self.R = ry @ rx  # columns: camera right, up, forward in world coordinates
        self.C = np.array([
            cam["x0"] + cam["sway_amp"] * math.sin(cam["sway_w"] * t + cam["sway_ph"]),
            cam["height"] + cam["bounce"] * math.sin(1.7 * t),
            _cam_z(cam, t),
        ])
        self.Rl = [[float(x) for x in row] for row in self.R]
        self.height, self.width = height, width

    def rotate_to_cam(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, ...]:
        """Camera coordinates of world vectors given by components."""
        R = self.Rl
        return (R[0][0] * x + R[1][0] * y + R[2][0] * z, R[0][1] * x + R[1][1] * y + R[2][1] * z,
                R[0][2] * x + R[1][2] * y + R[2][2] * z)

    def world_dirs(self) -> np.ndarray:
        """World ray directions (3, H, W) float32 of the pixel centres, scaled to unit camera depth."""
        R = self.Rl
        u = ((np.arange(self.width) - self.cx) / self.f).astype(np.float32)[None, :]
        v = ((self.cy - np.arange(self.height)) / self.f).astype(np.float32)[:, None]
        d = np.empty((3, self.height, self.width), np.float32)
        for k in range(3):
            d[k] = R[k][0] * u + R[k][1] * v + R[k][2]
        return d


def _offsets(scene: dict, t: float) -> np.ndarray:
    """Displacement (N, 3) of every primitive at time t relative to its t=0 placement."""
    return scene["vel"] * t + scene["osc"] * np.sin(scene["freq"] * t + scene["phase"])[:, None]


def _geometry(scene: dict, cam: _Camera, t: float) -> dict[str, np.ndarray]:
    """Ray-cast one frame: depth (H, W) float32 (camera z, inf = sky), ids (H, W) int32 (−1 sky,
    0 ground, k primitive k), world ray directions (3, H, W) and the primitives' boxes at time t."""
    H, W = cam.height, cam.width
    d = cam.world_dirs()
    C = cam.C
    with np.errstate(divide="ignore"):
        ground_t = np.float32(-C[1]) / d[1]
    ground = d[1] < -1e-7
    depth = np.where(ground, ground_t, np.float32(np.inf)).astype(np.float32)
    ids = np.where(ground, 0, -1).astype(np.int32)

    off = _offsets(scene, t)
    lo = scene["lo"] + off
    hi = scene["hi"] + off
    fwd = cam.R[:, 2]
    # screen-space bounding boxes of all primitives (clip the part behind the camera)
    corners = np.stack([np.stack([np.where(i & 1, hi[:, 0], lo[:, 0]), np.where(i & 2, hi[:, 1], lo[:, 1]),
                                  np.where(i & 4, hi[:, 2], lo[:, 2])], -1) for i in range(8)], 1)
    zc = (corners - C) @ fwd
    behind = zc.min(1) < 0.2
    if np.any(behind):
        m = ((corners[..., 0] - C[0]) * fwd[0] + (corners[..., 1] - C[1]) * fwd[1]).min(1)
        zclip = C[2] + (0.2 - m) / fwd[2]
        corners[behind, :, 2] = np.maximum(corners[behind, :, 2], zclip[behind, None])
    q = (corners - C) @ cam.R
    ok = (q[..., 2] > 0.1).all(1)
    qz = np.maximum(q[..., 2], 0.1)
    us = np.clip(cam.cx + cam.f * q[..., 0] / qz, -1e6, 1e6)
    vs = np.clip(cam.cy - cam.f * q[..., 1] / qz, -1e6, 1e6)
    u0 = np.maximum(np.floor(us.min(1)).astype(np.int64), 0)
    u1 = np.minimum(np.ceil(us.max(1)).astype(np.int64) + 1, W)
    v0 = np.maximum(np.floor(vs.min(1)).astype(np.int64), 0)
    v1 = np.minimum(np.ceil(vs.max(1)).astype(np.int64) + 1, H)
    visible = ok & (u1 > u0) & (v1 > v0) & (q[..., 2].min(1) < 2000.0)
    visible[0] = False
    shape = scene["shape"]
    cand = np.flatnonzero(visible)
    for k in cand[np.argsort(q[cand, :, 2].min(1), kind="stable")]:  # front to back
        sl = (slice(v0[k], v1[k]), slice(u0[k], u1[k]))
        dreg = depth[sl]
        if q[k, :, 2].min() > dreg.max():
            continue  # entirely behind what is already drawn there
        dx, dy, dz = d[0][sl], d[1][sl], d[2][sl]
        if shape[k] == BOX:
            with np.errstate(divide="ignore", invalid="ignore"):
                tn = np.full(dx.shape, -np.inf, np.float32)
                tf = np.full(dx.shape, np.inf, np.float32)
                for a, da in enumerate((dx, dy, dz)):
                    inv = np.float32(1.0) / da
                    t1 = np.float32(lo[k, a] - C[a]) * inv
                    t2 = np.float32(hi[k, a] - C[a]) * inv
                    np.maximum(tn, np.minimum(t1, t2), out=tn)
                    np.minimum(tf, np.maximum(t1, t2), out=tf)
            hit = (tf >= tn) & (tn > NEAR)
            th = tn
        else:
            c = 0.5 * (lo[k] + hi[k])
            rad = 0.5 * (hi[k] - lo[k])
            o = (C - c) / rad
            ax, ay, az = dx * np.float32(1 / rad[0]), dy * np.float32(1 / rad[1]), dz * np.float32(1 / rad[2])
            a = ax * ax + ay * ay + az * az
            b = np.float32(o[0]) * ax + np.float32(o[1]) * ay + np.float32(o[2]) * az
            cc = np.float32((o * o).sum() - 1.0)
            disc = b * b - a * cc
            th = (-b - np.sqrt(np.maximum(disc, 0))) / a
            hit = (disc >= 0) & (th > NEAR)
        closer = hit & (th < dreg)
        dreg[closer] = th[closer]
        ids[sl][closer] = k
    return {"depth": depth, "ids": ids, "dirs": d, "lo": lo, "hi": hi}


# --------------------------------------------------------------------------------------------
# Shading
# --------------------------------------------------------------------------------------------
def _shade(scene: dict, cam: _Camera, geo: dict) -> tuple[np.ndarray, np.ndarray]:
    """Colour (H, W, 3) float32 in [0, 1] and trainId label (H, W) uint8 of a ray-cast frame."""
    H, W = cam.height, cam.width
    style = scene["style"]
    ids = geo["ids"].reshape(-1)
    kinds = np.append(scene["kind"], K_SKY)[ids]  # ids −1 → last entry (sky)
    order = np.argsort(kinds, kind="stable")
    bounds = np.searchsorted(kinds[order], np.arange(K_SKY + 2))
    ids = ids[order]
    depth = geo["depth"].reshape(-1)[order]
    d = geo["dirs"].reshape(3, -1)[:, order]
    labels = np.append(scene["cls"], SKY)[ids].astype(np.uint8)
    rgb = np.empty((H * W, 3), np.float32)
    sun = style["sun"].astype(np.float32)
    haze = style["haze"].astype(np.float32)
    C = cam.C.astype(np.float32)
    for kind in range(K_SKY + 1):
        a, b = bounds[kind], bounds[kind + 1]
        if a == b:
            continue
        dd = d[:, a:b]
        if kind == K_SKY:
            rgb[a:b] = _shade_sky(style, dd)
            continue
        dnorm = np.sqrt((dd * dd).sum(0))
        t = depth[a:b]
        P = C[:, None] + dd * t
        fp = t / np.float32(cam.f)  # metres per pixel across the ray
        if kind == K_GROUND:
            col, cls = _shade_ground(scene, P, fp / np.maximum(np.abs(dd[1]) / dnorm, 0.05), fp)
            labels[a:b] = cls
            light = np.full(b - a, style["ambient"] + (1 - style["ambient"]) * max(sun[1], 0.0), np.float32)
        else:
            pid = ids[a:b]
            lo = geo["lo"][pid].T.astype(np.float32)
            hi = geo["hi"][pid].T.astype(np.float32)
            if kind == K_CANOPY:
                c, rad = 0.5 * (lo + hi), 0.5 * (hi - lo)
                q = (P - c) / rad
                n = q / rad
                normal = n / np.sqrt((n * n).sum(0))
                cosang = np.abs((normal * dd).sum(0)) / dnorm
                face = None
                ndot = sun @ normal
            else:
                q = P - lo  # local coordinates from the box's low corner
                size = hi - lo
                axis = np.argmin(np.minimum(q, size - q), 0)
                sel = np.arange(b - a)
                upper = q[axis, sel] > 0.5 * size[axis, sel]
                sign = np.where(upper, np.float32(1), np.float32(-1))
                cosang = np.abs(dd[axis, sel]) / dnorm
                ndot = sun[axis] * sign
                face = (axis, upper, size)
            fpn = fp / np.maximum(cosang, 0.25)
            col = _SHADERS[kind](scene, pid, q, face, fpn)
            light = style["ambient"] + (1 - style["ambient"]) * np.maximum(ndot, 0.0)
        fog = (1.0 - np.exp(-t / np.float32(style["fog"])))[:, None]
        rgb[a:b] = (col * light[:, None]) * (1 - fog) + haze * fog
    rgb *= (style["exposure"] * style["tint"]).astype(np.float32)
    out = np.empty_like(rgb)
    out[order] = np.clip(rgb, 0, 1)
    lab = np.empty_like(labels)
    lab[order] = labels
    return out.reshape(H, W, 3), lab.reshape(H, W)


def _shade_sky(style: dict, d: np.ndarray) -> np.ndarray:
    n = np.sqrt((d * d).sum(0))
    elev = np.clip(d[1] / n, -1, 1)
    g = np.clip(elev * 2.5, 0, 1)[:, None]
    top = style["sky_top"].astype(np.float32)
    col = style["haze"].astype(np.float32) * (1 - g) + top * g
    # clouds on a plane at infinity: a function of the viewing direction only
    den = np.maximum(d[1] / n, 0.0) + 0.08
    x, y = d[0] / n / den, d[2] / n / den
    seed = style["noise_seed"]
    fp = np.full(x.shape, 1e-3)
    c = _fbm(x, y, seed + 11, 1.5, 3, fp) + 0.5
    cover = np.clip((c - (1 - style["cloud"])) * 3.0, 0, 1)[:, None] * np.clip(elev * 8, 0, 1)[:, None]
    cloud = np.array([0.95, 0.95, 0.96], np.float32) * (0.8 + 0.2 * c[:, None])
    return (col * (1 - cover) + cloud * cover).astype(np.float32)


def _lot_lookup(lots: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lot type and yard flag at world z for one side; z outside all lots → building, paving."""
    i = np.searchsorted(lots[:, 0], z, side="right") - 1
    inside = (i >= 0) & (z < lots[np.clip(i, 0, None), 1])
    i = np.clip(i, 0, len(lots) - 1)
    kind = np.where(inside, lots[i, 2], 0).astype(np.int64)
    yard = np.where(inside, lots[i, 3], 0)
    z0, z1 = lots[i, 0], lots[i, 1]
    in_street = (kind == 1) & (z > z0 + 1.0) & (z < z1 - 1.0)
    return kind, yard, in_street


def _shade_ground(scene: dict, P: np.ndarray, fp: np.ndarray, fp_across: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    road = scene["road"]
    seed = scene["style"]["noise_seed"]
    X, Z = P[0], P[2]
    n = X.size
    cls = np.full(n, ROAD, np.uint8)
    right = X > road["right"]
    left = X < road["left"]
    street = np.zeros(n, bool)
    yard = np.zeros(n, np.float64)
    for mask, lots in ((right, road["lots_r"]), (left, road["lots_l"])):
        if np.any(mask):
            _, yard[mask], street[mask] = _lot_lookup(lots, Z[mask])
    ax = np.where(right, X - road["right"], road["left"] - X)  # distance beyond the kerb
    walk = np.where(right, road["walk_r"], road["walk_l"])
    side = (right | left) & ~street
    on_walk = side & (ax < walk)
    beyond = side & ~on_walk
    cls[on_walk] = SIDEWALK
    verge = np.where(right, road["verge_r"], road["verge_l"])
    cls[on_walk & (ax >= 0.25) & (ax < 0.25 + verge)] = TERRAIN
    cls[beyond & (yard > 0.5)] = TERRAIN
    cls[beyond & (yard <= 0.5)] = SIDEWALK

    col = np.empty((n, 3), np.float32)
    # asphalt
    m = cls == ROAD
    if np.any(m):
        x, z, f = X[m], Z[m], fp[m]
        g = road["asphalt"] + 0.10 * _fbm(x, z * 0.5, seed + 1, 8.0, 2, f) + 0.07 * _fbm(x, z, seed + 2, 0.6, 3, f)
        # worn wheel tracks
        lane = _frac(np.abs(x) / road["lane_w"]) * road["lane_w"]
        g -= 0.025 * (_band(lane - 0.5 * road["lane_w"] - 0.85, 0.35, f) + _band(lane - 0.5 * road["lane_w"] + 0.85, 0.35, f))
        mark = np.zeros_like(g)
        fa = fp_across[m]
        lw = road["lane_w"]
        inner = (x > -road["n_left"] * lw - 0.2) & (x < road["n_right"] * lw + 0.2)
        if road["double_centre"]:
            mark = np.maximum(mark, _band(x - 0.15, 0.06, fa) + _band(x + 0.15, 0.06, fa))
        else:
            mark = np.maximum(mark, _band(x, 0.07, fa) * _band(_frac(z / road["period"]) * road["period"]
                                                                 - road["dash"] / 2, road["dash"] / 2, f))
        for k in list(range(1, road["n_right"])) + [-k for k in range(1, road["n_left"])]:
            dash = _band(_frac(z / road["period"] + 0.3) * road["period"] - road["dash"] / 2, road["dash"] / 2, f)
            mark = np.maximum(mark, _band(x - k * lw, 0.07, fa) * dash)
        mark = np.maximum(mark, _band(x - road["n_right"] * lw, 0.08, fa) + _band(x + road["n_left"] * lw, 0.08, fa))
        mark *= inner
        # zebra crossings
        cz = scene["crossings"]
        j = np.clip(np.searchsorted(cz, z), 1, len(cz) - 1) if len(cz) > 1 else np.zeros(z.shape, np.int64)
        dz = np.minimum(np.abs(z - cz[j]), np.abs(z - cz[j - 1])) if len(cz) > 1 else np.abs(z - cz[0])
        zebra = _band(dz, 2.0, f) * _band(_frac(x / 1.1) - 0.5, 0.25, fa / 1.1) * inner
        mark = np.clip(mark, 0, 1)
        zebra = np.clip(zebra, 0, 1)
        paint = np.array([0.85, 0.78, 0.35] if road["yellow_centre"] else [0.88, 0.88, 0.86], np.float32)
        base = np.stack([g, g, g * 1.02], 1).astype(np.float32)
        base = base * (1 - mark[:, None]) + paint * mark[:, None]
        col[m] = base * (1 - zebra[:, None]) + np.float32(0.88) * zebra[:, None]
    m = cls == SIDEWALK
    if np.any(m):
        x, z, f = X[m], Z[m], fp[m]
        ts = road["tile"]
        ix, iz = np.floor(x / ts), np.floor(z / ts)
        tile = _hash(ix, iz, seed + 3) - 0.5
        inside = _band(_frac(x / ts) - 0.5, 0.5 - 0.03 / ts, f / ts) * _band(_frac(z / ts) - 0.5, 0.5 - 0.03 / ts, f / ts)
        grout = 0.75 + 0.25 * inside
        g = road["paving"] * grout * (1 + 0.12 * tile * _detail(f, ts)) + 0.06 * _fbm(x, z, seed + 4, 3.0, 2, f)
        axm = ax[m]
        kerb = _band(axm - 0.12, 0.12, f)
        g = g * (1 - kerb) + 0.75 * kerb
        col[m] = np.stack([g * 1.02, g, g * 0.96], 1)
    m = cls == TERRAIN
    if np.any(m):
        x, z, f = X[m], Z[m], fp[m]
        a = _fbm(x, z, seed + 5, 4.0, 3, f)
        dirt = np.clip(_noise(x / 6, z / 6, seed + 6) * 2.2 - 1.3, 0, 1)
        grass = np.array([0.30, 0.42, 0.16], np.float32) * (1 + 0.5 * a)[:, None]
        soil = np.array([0.45, 0.38, 0.27], np.float32) * (1 + 0.3 * a)[:, None]
        col[m] = grass * (1 - dirt[:, None]) + soil * dirt[:, None]
    return col, cls


def _face_uv(q: np.ndarray, face: tuple) -> tuple[np.ndarray, np.ndarray]:
    """Face coordinates: horizontal along the face, vertical (y) for side faces."""
    axis = face[0]
    u = np.where(axis == 0, q[2], q[0])
    v = np.where(axis == 1, q[2], q[1])
    return u, v


def _shade_building(scene, pid, q, face, fp):
    par = scene["params"][pid].T
    floor_h, spacing, ww, wh, shop, uoff, _office, grain = par
    color = scene["color"][pid]
    glass = scene["color2"][pid]
    tex = scene["tex"][pid]
    axis, _, size = face
    u, v = _face_uv(q, face)
    height = size[1]
    f = fp
    wall = 1 + 0.25 * _fbm(u, v, tex, 4.0, 2, f) * (grain * 8) + 0.12 * _fbm(u, v, tex + 3, 0.8, 2, f)
    col = color * wall[:, None]
    # plinth
    col = col * (1 - 0.2 * _band(v - 0.25, 0.25, f))[:, None]
    # floor bands
    band = _band(_frac(v / floor_h) * floor_h - 0.1, 0.1, f) * (v > floor_h * 0.9)
    col = col * (1 - 0.18 * band[:, None])
    # windows
    fu = (u + uoff) / spacing
    fv = v / floor_h
    col_i, row_i = np.floor(fu), np.floor(fv)
    inwin = _band(_frac(fu) - 0.5, ww / 2, f / spacing) * _band(_frac(fv) - 0.55, wh / 2, f / floor_h)
    ground = v <= floor_h
    upper_floor = ((v > floor_h) | (shop < 0.5)) & (v < height - 0.8)  # without shops: windows from the ground floor
    shopwin = shop * ground * _band(_frac(u / 5.0) - 0.5, 0.38, f / 5.0) * _band(v - 1.45, 1.0, f)
    door = (shop < 0.5) * ground * _band(_frac(fu / 3.0) - 0.5, 0.5 * ww / 3.0, f / (3.0 * spacing)) * _band(v - 1.05, 1.05, f)
    win = np.maximum(inwin * upper_floor * (1 - door), shopwin)
    # per-window reflection / light
    refl = _hash(col_i, row_i, tex + 17)
    wcol = glass * (0.6 + 0.9 * refl)[:, None] + np.where(refl > 0.93, 0.35, 0.0)[:, None]
    # frame around windows
    frame = np.clip(_band(_frac(fu) - 0.5, ww / 2 + 0.08 / spacing, f / spacing)
                    * _band(_frac(fv) - 0.55, wh / 2 + 0.08 / floor_h, f / floor_h) * upper_floor - win, 0, 1)
    col = col * (1 - 0.25 * frame[:, None])
    col = col * (1 - win[:, None]) + wcol * win[:, None]
    col = col * (1 - 0.6 * door[:, None])
    # aliasing guard: far façades converge to the mean colour
    far = np.clip(f / (0.25 * spacing) - 1, 0, 1)[:, None]
    area = (ww * wh)[:, None]
    mean = color * (1 - area) + glass * 1.05 * area
    col = col * (1 - far) + mean * far
    roof = (axis == 1)[:, None]
    col = np.where(roof, color * 0.55, col)
    return col.astype(np.float32)


def _shade_wall(scene, pid, q, face, fp):
    color = scene["color"][pid]
    tex = scene["tex"][pid]
    u, v = _face_uv(q, face)
    block = scene["params"][pid, 0]
    shift = np.floor(v / block) * 0.5
    inside = _band(_frac(u / (2 * block) + shift) - 0.5, 0.5 - 0.02 / block, fp / block) * \
        _band(_frac(v / block) - 0.5, 0.5 - 0.04 / block, fp / block)
    g = (0.8 + 0.2 * inside) * (1 + 0.3 * _fbm(u, v, tex, 2.0, 3, fp))
    return (color * g[:, None]).astype(np.float32)


def _shade_fence(scene, pid, q, face, fp):
    color = scene["color"][pid]
    slat, rail_h = scene["params"][pid].T[:2]
    u, v = _face_uv(q, face)
    s = _band(_frac(u / slat) - 0.5, 0.3, fp / slat)
    top = np.take_along_axis(face[2], np.ones((1, u.size), np.int64), 0)[0]
    rail = np.maximum(_band(v - rail_h, 0.05, fp), _band(v - (top - 0.1), 0.05, fp))
    g = 0.45 + 0.55 * np.maximum(s, rail)
    return (color * g[:, None]).astype(np.float32)


def _shade_pole(scene, pid, q, face, fp):
    color = scene["color"][pid]
    u, v = _face_uv(q, face)
    g = 1 + 0.1 * _fbm(u * 4, v, scene["tex"][pid], 1.0, 2, fp)
    return (color * g[:, None]).astype(np.float32)


def _shade_sign(scene, pid, q, face, fp):
    inner, border = scene["color"][pid], scene["color2"][pid]
    axis, upper, size = face
    u, v = _face_uv(q, face)
    w = np.take_along_axis(size, np.zeros((1, u.size), np.int64), 0)[0]
    hgt = np.take_along_axis(size, np.ones((1, u.size), np.int64), 0)[0]
    cu, cv = u - w / 2, v - hgt / 2
    round_ = scene["params"][pid, 0] > 0.5
    r = np.where(round_, np.sqrt(cu * cu + cv * cv), np.maximum(np.abs(cu), np.abs(cv)))
    ring = _band(r - 0.5 * w + 0.06, 0.06, fp)
    symbol = _band(r, 0.12 * w, fp)
    col = inner * (1 - ring)[:, None] + border * ring[:, None]
    col = col * (1 - symbol)[:, None] + np.float32(0.92) * symbol[:, None]
    outline = _band(r - 0.5 * w, 0.02 * w, fp)[:, None]
    col = col * (1 - 0.4 * outline)
    front = (axis == 2) & ~upper
    back = np.array([0.5, 0.5, 0.52], np.float32)
    return np.where(front[:, None], col, back).astype(np.float32)


def _shade_light(scene, pid, q, face, fp):
    axis, upper, _ = face
    u, v = _face_uv(q, face)
    lit = scene["params"][pid, 0]
    col = np.full((u.size, 3), 0.08, np.float32)
    front = (axis == 2) & ~upper
    colors = np.array([[0.2, 0.9, 0.3], [0.95, 0.7, 0.1], [0.95, 0.15, 0.1]], np.float32)
    for k in range(3):
        lamp = _band(np.sqrt((u - 0.18) ** 2 + (v - (0.2 + 0.3 * k)) ** 2), 0.1, fp) * front
        on = np.where(lit == k, 1.0, 0.25)
        col += (lamp * on)[:, None] * colors[k]
    return col


def _shade_trunk(scene, pid, q, face, fp):
    u, v = _face_uv(q, face)
    g = 1 + 0.4 * _fbm(u * 6, v * 0.6, scene["tex"][pid], 0.5, 2, fp)
    return (scene["color"][pid] * g[:, None]).astype(np.float32)


def _leaves(scene, pid, a, b, fp):
    tex = scene["tex"][pid]
    g = 1 + 0.9 * _fbm(a, b, tex, 1.2, 4, fp)
    spots = np.clip(_noise(a / 0.35, b / 0.35, tex + 5) * 3 - 2, 0, 1) * _detail(fp, 0.35)
    col = scene["color"][pid] * g[:, None]
    return (col * (1 - 0.45 * spots)[:, None]).astype(np.float32)


def _shade_canopy(scene, pid, q, face, fp):
    # q: point on the unit sphere of the ellipsoid; texture in metres via the radii
    rad = 0.5 * (scene["hi"][pid] - scene["lo"][pid]).T
    a = np.arctan2(q[0], -q[2]) * 0.5 * (rad[0] + rad[2])  # seam on the far (+z) side
    b = q[1] * rad[1]
    return _leaves(scene, pid, a, b, fp * 1.5)


def _shade_hedge(scene, pid, q, face, fp):
    u, v = _face_uv(q, face)
    return _leaves(scene, pid, u, v, fp)


def _shade_car(scene, pid, q, face, fp):
    color = scene["color"][pid]
    heading = scene["params"][pid, 0]
    van = scene["params"][pid, 1]
    axis, upper, size = face
    u, v = _face_uv(q, face)
    sx, sy, sz = size
    col = color * (0.85 + 0.25 * np.clip(v / sy, 0, 1))[:, None]
    dark = np.zeros(u.size, np.float32)
    side = axis == 0
    # wheels and sills on the sides
    wheel = np.maximum(_band(np.sqrt((u - 0.8) ** 2 + (v - 0.33) ** 2), 0.33, fp),
                       _band(np.sqrt((u - (sz - 0.8)) ** 2 + (v - 0.33) ** 2), 0.33, fp))
    hub = np.maximum(_band(np.sqrt((u - 0.8) ** 2 + (v - 0.33) ** 2), 0.13, fp),
                     _band(np.sqrt((u - (sz - 0.8)) ** 2 + (v - 0.33) ** 2), 0.13, fp))
    door = _band(u - 0.5 * sz, 0.015, fp) * (v > 0.35)
    van_win = van * _band(v - (sy - 0.45), 0.22, fp) * _band(u - 0.5 * sz, 0.5 * sz - 0.4, fp)
    dark = np.where(side, np.maximum.reduce([wheel * (1 - 0.5 * hub), door * 0.6, _band(v, 0.12, fp), van_win]), dark)
    # front and back
    endf = axis == 2
    is_front = endf & (upper == (heading > 0))
    cu = u - 0.5 * sx
    lamp_v = _band(v - 0.75, 0.08, fp)
    lamps = lamp_v * np.maximum(_band(cu - (0.5 * sx - 0.25), 0.15, fp), _band(cu + (0.5 * sx - 0.25), 0.15, fp))
    plate = _band(cu, 0.26, fp) * _band(v - 0.42, 0.07, fp)
    bumper = _band(v - 0.12, 0.12, fp)
    grille = _band(cu, 0.45, fp) * _band(v - 0.55, 0.1, fp)
    back_win = van * _band(v - (sy - 0.45), 0.22, fp) * _band(cu, 0.5 * sx - 0.2, fp)
    dark = np.where(endf, np.maximum.reduce([bumper * 0.8, back_win, np.where(is_front, grille, 0)]), dark)
    col = col * (1 - 0.9 * dark)[:, None]
    glass = np.array([0.1, 0.12, 0.15], np.float32)
    col = np.where((side | endf)[:, None] & (van_win + back_win > 0.5)[:, None], glass, col)
    tail = np.array([0.75, 0.08, 0.05], np.float32)
    head = np.array([0.95, 0.92, 0.8], np.float32)
    lamp_col = np.where(is_front[:, None], head, tail)
    col = np.where((endf & (lamps > 0.5))[:, None], lamp_col, col)
    col = np.where((endf & (plate > 0.5))[:, None], np.float32(0.9), col)
    return col.astype(np.float32)


def _shade_cabin(scene, pid, q, face, fp):
    color = scene["color"][pid]
    axis, _, size = face
    u, v = _face_uv(q, face)
    sx, sy, sz = size
    glass = np.array([0.1, 0.12, 0.15], np.float32) * (1 + 0.5 * _fbm(u, v, scene["tex"][pid], 2.0, 1, fp))[:, None]
    side = axis == 0
    win_side = _band(u - 0.5 * sz, 0.5 * sz - 0.15, fp) * _band(v - 0.5 * sy, 0.5 * sy - 0.05, fp) * \
        (1 - _band(u - 0.5 * sz, 0.05, fp))
    win_end = _band(u - 0.5 * sx, 0.5 * sx - 0.12, fp) * _band(v - 0.5 * sy, 0.5 * sy - 0.05, fp)
    win = np.where(side, win_side, np.where(axis == 2, win_end, 0.0))
    return (color * (1 - win)[:, None] + glass * win[:, None]).astype(np.float32)


def _shade_person(scene, pid, q, face, fp):
    part = scene["params"][pid, 0]
    color = scene["color"][pid]
    u, v = _face_uv(q, face)
    g = 1 + 0.25 * _fbm(u * 3, v * 3, scene["tex"][pid], 0.6, 2, fp)
    col = color * g[:, None]
    head_h = scene["params"][pid, 1]
    hair = (part == 2) & ((v > 0.6 * head_h) | (face[0] == 1))
    return np.where(hair[:, None], scene["color2"][pid], col).astype(np.float32)


_SHADERS: dict[int, Callable] = {
    K_BUILDING: _shade_building, K_WALL: _shade_wall, K_FENCE: _shade_fence, K_POLE: _shade_pole,
    K_SIGN: _shade_sign, K_LIGHT: _shade_light, K_TRUNK: _shade_trunk, K_CANOPY: _shade_canopy,
    K_HEDGE: _shade_hedge, K_CAR: _shade_car, K_CABIN: _shade_cabin, K_PERSON: _shade_person,
}


# --------------------------------------------------------------------------------------------
# Flow
# --------------------------------------------------------------------------------------------
def _flow(scene: dict, cam_t: _Camera, t: float, geo_t: dict, cam_s: _Camera, s: float,
          geo_s: dict | None) -> tuple[np.ndarray, np.ndarray | None]:
    """Exact flow (2, H, W) from frame t to frame s and, given frame s's geometry, the occlusion
    mask (True where the pixel's scene point is hidden or outside the image in frame s)."""
    H, W = cam_t.height, cam_t.width
    depth, ids, d = geo_t["depth"], geo_t["ids"], geo_t["dirs"]
    sky = ids < 0
    # per primitive: its displacement t → s plus the camera displacement; sky (row −1): none
    table = _offsets(scene, s) - _offsets(scene, t)
    table[0] = 0.0
    table = np.vstack([table + (cam_t.C - cam_s.C), np.zeros((1, 3))]).astype(np.float32)
    tt = np.where(sky, np.float32(1), depth)  # sky: a direction, only rotated
    qx, qy, qz = cam_s.rotate_to_cam(d[0] * tt + table[:, 0][ids], d[1] * tt + table[:, 1][ids],
                                     d[2] * tt + table[:, 2][ids])
    zs = np.maximum(qz, np.float32(1e-6))
    u_s = np.float32(cam_s.cx) + np.float32(cam_s.f) * qx / zs
    v_s = np.float32(cam_s.cy) - np.float32(cam_s.f) * qy / zs
    lim = np.float32(4.0 * (H + W))
    flow = np.empty((2, H, W), np.float32)
    np.clip(u_s - np.arange(W, dtype=np.float32)[None, :], -lim, lim, out=flow[0])
    np.clip(v_s - np.arange(H, dtype=np.float32)[:, None], -lim, lim, out=flow[1])
    occ = None
    if geo_s is not None:
        # visible: in the image and not behind the farthest surface among the 2×2 pixels around
        # the target position (lenient by one pixel at occlusion boundaries, exact elsewhere)
        inside = (qz > NEAR) & (u_s > -0.5) & (u_s < W - 0.5) & (v_s > -0.5) & (v_s < H - 0.5)
        iu = np.clip(np.floor(u_s), 0, W - 2).astype(np.intp)
        iv = np.clip(np.floor(v_s), 0, H - 2).astype(np.intp)
        ds = geo_s["depth"]
        other = np.maximum(np.maximum(ds[iv, iu], ds[iv, iu + 1]), np.maximum(ds[iv + 1, iu], ds[iv + 1, iu + 1]))
        with np.errstate(invalid="ignore"):
            visible = np.where(sky, np.isinf(other), qz <= other * np.float32(1.01) + np.float32(0.05))
        occ = ~(inside & visible)
    return flow, occ


# --------------------------------------------------------------------------------------------
# Public rendering API
# --------------------------------------------------------------------------------------------
def _check_size(height: int, width: int) -> None:
    if height < 8 or width < 8:
        raise ValueError(f"image size must be at least 8×8, got {height}×{width}")


def render_clip(seed: int, num_frames: int, height: int, width: int, num_classes: int = 19,
                occlusion: bool = True, flows: bool = True, depth: bool = False) -> dict[str, np.ndarray]:
    """Render a clip of the synthetic street scene ``seed``.

    Args:
        seed: scene seed (non-negative); equal seeds give identical clips, and for clips of up to
            64 frames a shorter clip is the prefix of a longer one; at any resolution the scene is
            the same.
        num_frames: T ≥ 1.
        height, width: image size H×W (any size ≥ 8).
        num_classes: 19 (Cityscapes trainIds) or 11 (CamVid ids).
        occlusion: also compute the occlusion masks (needs ``flows``).
        flows: compute the flows (False: frames and labels only, less time and memory).
        depth: also return the depth maps.

    Returns:
        dict with ``frames`` uint8 (T, H, W, 3) RGB; ``labels`` uint8 (T, H, W) (no ignore pixels);
        if ``flows``: ``flow_bwd`` float32 (T, 2, H, W), frame t → t−1 (zeros for t = 0) and
        ``flow_fwd`` float32 (T, 2, H, W), frame t → t+1 (zeros for the last frame); if also
        ``occlusion``: ``occ_bwd`` / ``occ_fwd`` bool (T, H, W), True where the pixel's scene point
        is hidden or outside the image in frame t−1 / t+1 (False where there is no such frame);
        if ``depth``: ``depth`` float32 (T, H, W), camera depth in metres (inf for sky).
    """
    if num_frames < 1:
        raise ValueError(f"num_frames must be ≥ 1, got {num_frames}")
    _check_size(height, width)
    classes = _class_set(num_classes)
    scene = _build_scene(int(seed), num_frames)
    T, H, W = num_frames, height, width
    out: dict[str, np.ndarray] = {"frames": np.empty((T, H, W, 3), np.uint8), "labels": np.empty((T, H, W), np.uint8)}
    if flows:
        out["flow_bwd"] = np.zeros((T, 2, H, W), np.float32)
        out["flow_fwd"] = np.zeros((T, 2, H, W), np.float32)
        if occlusion:
            out["occ_bwd"] = np.zeros((T, H, W), bool)
            out["occ_fwd"] = np.zeros((T, H, W), bool)
    if depth:
        out["depth"] = np.empty((T, H, W), np.float32)
    prev = None  # (camera, geometry) of the previous frame: only two frames are held at a time
    for t in range(T):
        cam = _Camera(scene, float(t), H, W)
        geo = _geometry(scene, cam, float(t))
        rgb, lab = _shade(scene, cam, geo)
        np.rint(rgb * 255.0, out=rgb)
        out["frames"][t] = rgb
        out["labels"][t] = lab if classes is CITYSCAPES else TRAINID_TO_CAMVID[lab]
        if depth:
            out["depth"][t] = geo["depth"]
        if flows and prev is not None:
            pcam, pgeo = prev
            out["flow_bwd"][t], occ = _flow(scene, cam, t, geo, pcam, t - 1, pgeo if occlusion else None)
            if occ is not None:
                out["occ_bwd"][t] = occ
            out["flow_fwd"][t - 1], occ = _flow(scene, pcam, t - 1, pgeo, cam, t, geo if occlusion else None)
            if occ is not None:
                out["occ_fwd"][t - 1] = occ
        prev = (cam, geo)
    return out


def render_flow(seed: int, num_frames: int, height: int, width: int, source: int, target: int,
                occlusion: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """Exact flow (2, H, W) float32 from frame ``source`` to frame ``target`` of clip ``seed``
    (computed directly from the scene, not composed), and optionally the occlusion mask (H, W)."""
    _check_size(height, width)
    scene = _build_scene(int(seed), num_frames)
    return _pair_flow(scene, height, width, source, target, occlusion)


def _pair_flow(scene: dict, height: int, width: int, source: int, target: int,
               occlusion: bool) -> tuple[np.ndarray, np.ndarray | None]:
    if source == target:
        return np.zeros((2, height, width), np.float32), (np.zeros((height, width), bool) if occlusion else None)
    cam_a = _Camera(scene, float(source), height, width)
    cam_b = _Camera(scene, float(target), height, width)
    geo_a = _geometry(scene, cam_a, float(source))
    geo_b = _geometry(scene, cam_b, float(target)) if occlusion else None
    return _flow(scene, cam_a, source, geo_a, cam_b, target, geo_b)


# --------------------------------------------------------------------------------------------
# Data set
# --------------------------------------------------------------------------------------------
Sample = dict[str, Any]


class SyntheticVideoDataset(HasClasses, Dataset):
    """Synthetic clips as training pairs or evaluation windows (every frame is labelled).

    Clip ``i`` of a split is ``render_clip(clip_seed(split, i, seed), clip_len, height, width,
    num_classes)``; the splits' clip seeds are disjoint. Clips are rendered on first use and kept
    in a per-process cache (each DataLoader worker has its own): about ``clip_len·H·W·4`` bytes per
    clip in training mode (2.6 MB for 20 frames at 128×256), plus the flows of the window in
    evaluation mode.

    Training mode: one sample per (clip, labelled frame t, offset j), for every t whose neighbours
    at all ``offsets`` lie in the clip (every ``label_stride``-th such t). Sample:
    ``frames`` float32 (2, 3, H, W) RGB in [0, 1] = [neighbour t+j, labelled t]; ``label`` int64
    (H, W); ``edge`` int64 (H, W) (:func:`dataset.edges.edge_label` of the full label); ``offset``
    and ``gap`` = j; ``id`` str; with ``with_flow=True`` also ``flow`` float32 (2, H, W): the exact
    flow from the labelled frame to the neighbour (for every offset, computed directly from the
    scene, not composed; about 5–10 ms per sample at 128×256), i.e. sampling the neighbour at
    pixel + flow reproduces the labelled frame where it is visible. ``transform`` is called as
    ``transform(sample, rng)`` with a numpy Generator seeded from ``(seed, epoch, index)`` (see
    :meth:`set_epoch`); with ``with_flow=True`` it must crop/flip/scale ``flow`` with the frames
    (negating its x component on a horizontal flip, scaling its values with the image).

    Evaluation mode: one sample per clip, the ``window`` frames ending at the clip's last frame:
    ``frames`` float32 (T, 3, H, W) (labelled frame last); ``label`` int64 (H, W); ``labels`` int64
    (T, H, W) of every window frame; ``flows`` float32 (T−1, 2, H, W): ``flows[i]`` is the exact
    backward flow from window frame i+1 to frame i; ``id``; ``gaps`` = [1] * (T−1).
    """

    def __init__(self, split: str = "train", mode: str = "train", num_clips: int = 16, clip_len: int = 20,
                 height: int = 128, width: int = 256, num_classes: int = 19,
                 offsets: Sequence[int] = (-5, -4, -3, -2, -1, 1, 2, 3, 4, 5), window: int = 10,
                 transform: Callable[[Sample, np.random.Generator], Sample] | None = None, seed: int = 0,
                 label_stride: int = 1, with_flow: bool = False) -> None:
        if split not in SPLIT_CODES:
            raise ValueError(f"split must be one of {sorted(SPLIT_CODES)}, got {split!r}")
        if mode not in ("train", "eval"):
            raise ValueError(f"mode must be 'train' or 'eval', got {mode!r}")
        if num_clips < 1:
            raise ValueError(f"num_clips must be ≥ 1, got {num_clips}")
        _check_size(height, width)
        self.classes = _class_set(num_classes)
        self.split, self.mode, self.num_clips, self.clip_len = split, mode, int(num_clips), int(clip_len)
        self.height, self.width, self.window = int(height), int(width), int(window)
        self.offsets = tuple(int(o) for o in offsets)
        self.transform, self.seed, self.with_flow = transform, int(seed), with_flow
        self.epoch = 0
        self._cache: dict[int, dict[str, Any]] = {}
        if mode == "train":
            if not self.offsets:
                raise ValueError("offsets must not be empty")
            first = max(0, -min(self.offsets))
            last = self.clip_len - 1 - max(0, max(self.offsets))
            if last < first:
                raise ValueError(f"clip_len {clip_len} is too short for offsets {self.offsets}: a labelled "
                                 f"frame needs {first} frames before it and {max(0, max(self.offsets))} after it")
            frames = range(first, last + 1, max(1, int(label_stride)))
            self.items = [(c, t, o) for c in range(self.num_clips) for t in frames for o in self.offsets]
        else:
            if self.window < 1 or self.clip_len < self.window:
                raise ValueError(f"clip_len {clip_len} must be ≥ window {window} ≥ 1 in eval mode")
            self.items = [(c, self.clip_len - 1, 0) for c in range(self.num_clips)]

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose augmentation the next iterator draws."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.items)

    def clip_seed(self, clip: int) -> int:
        return clip_seed(self.split, clip, self.seed)

    def _clip(self, clip: int) -> dict[str, Any]:
        cached = self._cache.get(clip)
        if cached is None:
            seed = self.clip_seed(clip)
            data = render_clip(seed, self.clip_len, self.height, self.width, self.num_classes,
                               occlusion=False, flows=self.mode == "eval")
            if self.mode == "train":
                cached = {"frames": data["frames"], "labels": data["labels"]}
                if self.with_flow:
                    cached["scene"] = _build_scene(seed, self.clip_len)
            else:
                w = slice(self.clip_len - self.window, self.clip_len)
                cached = {"frames": data["frames"][w], "labels": data["labels"][w],
                          "flows": data["flow_bwd"][w][1:]}
            self._cache[clip] = cached
        return cached

    def _id(self, clip: int, t: int) -> str:
        return f"synthetic_{self.split}_{clip:04d}_{t:03d}"

    def __getitem__(self, index: int) -> Sample:
        clip, t, offset = self.items[index]
        data = self._clip(clip)
        if self.mode == "eval":
            return {
                "frames": _to_tensor(data["frames"]),
                "label": torch.from_numpy(data["labels"][-1].astype(np.int64)),
                "labels": torch.from_numpy(data["labels"].astype(np.int64)),
                "flows": torch.from_numpy(np.ascontiguousarray(data["flows"])),
                "id": self._id(clip, t),
                "gaps": [1] * (self.window - 1),
            }
        label = data["labels"][t]
        sample = {
            "frames": _to_tensor(data["frames"][[t + offset, t]]),
            "label": torch.from_numpy(label.astype(np.int64)),
            "edge": torch.from_numpy(edge_label(label, 255, self.classes.thin_classes)),
            "offset": offset,
            "gap": offset,
            "id": self._id(clip, t),
        }
        if self.with_flow:
            flow, _ = _pair_flow(data["scene"], self.height, self.width, t, t + offset, occlusion=False)
            sample["flow"] = torch.from_numpy(flow)
        if self.transform is not None:
            sample = self.transform(sample, np.random.default_rng((self.seed, self.epoch, index)))
            if "flow" in sample and tuple(sample["flow"].shape[-2:]) != tuple(sample["label"].shape[-2:]):
                raise ValueError(f"transform left 'flow' at size {tuple(sample['flow'].shape[-2:])} but the label "
                                 f"at {tuple(sample['label'].shape[-2:])}: it must crop/flip the flow too "
                                 f"(or use with_flow=False)")
        return sample


def _to_tensor(frames: np.ndarray) -> torch.Tensor:
    """T×H×W×3 uint8 RGB → T×3×H×W float32 in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).contiguous().float().div_(255.0)


# --------------------------------------------------------------------------------------------
# Writing the real data sets' layouts
# --------------------------------------------------------------------------------------------
def _imwrite(path: Path, image: np.ndarray) -> None:
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    if not cv2.imwrite(str(path), image):
        raise OSError(f"{path}: could not write image")


def _write_list(path: Path, entries: Sequence[tuple[str, str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{a} {b}\n" for a, b in entries))


def write_cityscapes_layout(root: str | Path, split: str = "train", num_clips: int = 2, height: int = 128,
                            width: int = 256, seed: int = 0, num_frames: int = 30, annotated: int = 19,
                            label_ids: bool = True) -> list[tuple[str, str]]:
    """Write clips in the Cityscapes video layout under ``root``.

    Frames: ``leftImg8bit_sequence/<split>/<city>/<city>_<seq:06d>_<frame:06d>_leftImg8bit.png`` for
    frames 0..num_frames−1 of each snippet; labels for the annotated frame only:
    ``gtFine/<split>/<city>/<city>_<seq>_<frame>_gtFine_labelTrainIds.png`` (and ``_labelIds.png``).
    Clips alternate between two cities. Also writes the list ``<root>/<split>.txt``
    (``<frame> <label>`` per line, relative to ``root``). Returns the list entries.
    """
    root = Path(root)
    if not 0 <= annotated < num_frames:
        raise ValueError(f"annotated frame {annotated} is outside 0..{num_frames - 1}")
    entries = []
    for i in range(num_clips):
        city = ("synthville", "synthburg")[i % 2]
        seq = i // 2
        clip = render_clip(clip_seed(split, i, seed), num_frames, height, width, 19, flows=False)
        stem = f"{city}_{seq:06d}"
        for t in range(num_frames):
            _imwrite(root / "leftImg8bit_sequence" / split / city / f"{stem}_{t:06d}_leftImg8bit.png", clip["frames"][t])
        base = f"gtFine/{split}/{city}/{stem}_{annotated:06d}_gtFine_"
        _imwrite(root / f"{base}labelTrainIds.png", clip["labels"][annotated])
        if label_ids:
            _imwrite(root / f"{base}labelIds.png", TRAINID_TO_LABELID[clip["labels"][annotated]])
        entries.append((f"leftImg8bit_sequence/{split}/{city}/{stem}_{annotated:06d}_leftImg8bit.png",
                        f"{base}labelTrainIds.png"))
    _write_list(root / f"{split}.txt", entries)
    return entries


def _camvid_seq(split: str, i: int) -> str:
    return f"SY{split[0].upper()}{i:03d}"


def write_camvid_layout(root: str | Path, split: str = "train", num_clips: int = 2, height: int = 96,
                        width: int = 128, seed: int = 0, num_frames: int = 30,
                        labelled: Sequence[int] = (9, 19), first_number: int = 1000) -> list[tuple[str, str]]:
    """Write clips in the original CamVid video layout under ``root``.

    Every frame: ``video_image/<seq>/<seq>.avi_<number:06d>.png`` (number = first_number + index);
    labels (11 classes) for the ``labelled`` frame indices: ``11labels/<seq>_<number:06d>.png`` (the
    label shares the frame's number, like 0016E5). List ``<root>/<split>.txt``: lines
    ``video_image/... 11labels/...``. Returns the list entries.
    """
    root = Path(root)
    entries = []
    for i in range(num_clips):
        seq = _camvid_seq(split, i)
        clip = render_clip(clip_seed(split, i, seed), num_frames, height, width, 11, flows=False)
        for t in range(num_frames):
            _imwrite(root / "video_image" / seq / f"{seq}.avi_{first_number + t:06d}.png", clip["frames"][t])
        for t in labelled:
            if not 0 <= t < num_frames:
                raise ValueError(f"labelled frame {t} is outside 0..{num_frames - 1}")
            name = f"{seq}_{first_number + t:06d}.png"
            _imwrite(root / "11labels" / name, clip["labels"][t])
            entries.append((f"video_image/{seq}/{seq}.avi_{first_number + t:06d}.png", f"11labels/{name}"))
    _write_list(root / f"{split}.txt", entries)
    return entries


def write_segnet_layout(root: str | Path, split: str = "train", num_clips: int = 2, height: int = 96,
                        width: int = 128, seed: int = 0, num_frames: int = 20, ext: str = "png",
                        first_number: int = 1) -> list[tuple[str, str]]:
    """Write clips in the SegNet CamVid layout under ``root``: ``<split>/<seq>_<number:05d>.<ext>``
    frames and ``<split>annot/<seq>_<number:05d>.png`` labels (11 classes), every frame labelled,
    frame numbers first_number, first_number+2, ... (a 15 Hz run of 30 Hz frame numbers, like the
    CamVid val clip). List ``<root>/<split>.txt`` in the upstream format
    (``/SegNet/CamVid/<split>/<name>.png /SegNet/CamVid/<split>annot/<name>.png``, ``.png`` even for
    JPEG frames, as in the shared copy). Returns the list entries.
    """
    root = Path(root)
    ext = ext.lstrip(".").lower()
    entries = []
    for i in range(num_clips):
        seq = _camvid_seq(split, i)
        clip = render_clip(clip_seed(split, i, seed), num_frames, height, width, 11, flows=False)
        for t in range(num_frames):
            name = f"{seq}_{first_number + 2 * t:05d}"
            if ext in ("jpg", "jpeg"):
                import cv2

                path = root / split / f"{name}.{ext}"
                path.parent.mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(path), cv2.cvtColor(clip["frames"][t], cv2.COLOR_RGB2BGR),
                            [cv2.IMWRITE_JPEG_QUALITY, 92])
            else:
                _imwrite(root / split / f"{name}.{ext}", clip["frames"][t])
            _imwrite(root / f"{split}annot" / f"{name}.png", clip["labels"][t])
            entries.append((f"/SegNet/CamVid/{split}/{name}.png", f"/SegNet/CamVid/{split}annot/{name}.png"))
    _write_list(root / f"{split}.txt", entries)
    return entries


# --------------------------------------------------------------------------------------------
# Preview
# --------------------------------------------------------------------------------------------
def _color_wheel() -> np.ndarray:
    """The Middlebury flow colour wheel (Baker et al.), 55 RGB colours in [0, 255]."""
    segments = [(15, (255, 0, 0), (255, 255, 0)), (6, (255, 255, 0), (0, 255, 0)),
                (4, (0, 255, 0), (0, 255, 255)), (11, (0, 255, 255), (0, 0, 255)),
                (13, (0, 0, 255), (255, 0, 255)), (6, (255, 0, 255), (255, 0, 0))]
    rows = []
    for n, a, b in segments:
        k = np.arange(n)[:, None] / n
        rows.append(np.array(a) * (1 - k) + np.array(b) * k)
    return np.concatenate(rows)


def flow_to_color(flow: np.ndarray, max_magnitude: float | None = None) -> np.ndarray:
    """Colour-code a flow field (2, H, W) as (H, W, 3) uint8: hue = direction, saturation =
    magnitude / max_magnitude (default: the field's maximum)."""
    u, v = flow[0].astype(np.float64), flow[1].astype(np.float64)
    mag = np.hypot(u, v)
    scale = max_magnitude if max_magnitude else max(float(mag.max()), 1e-6)
    wheel = _color_wheel()
    n = len(wheel)
    angle = np.arctan2(-v, -u) / np.pi
    fk = (angle + 1) / 2 * (n - 1)
    k0 = np.floor(fk).astype(int) % n
    k1 = (k0 + 1) % n
    f = (fk - np.floor(fk))[..., None]
    col = ((1 - f) * wheel[k0] + f * wheel[k1]) / 255.0
    r = np.clip(mag / scale, 0, 1)[..., None]
    col = 1 - r * (1 - col)
    return np.rint(col * 255).astype(np.uint8)


def save_preview(path: str | Path, seed: int = 0, num_frames: int = 10, height: int = 128, width: int = 256,
                 num_classes: int = 19, columns: int = 4) -> dict[str, Any]:
    """Save a figure of a clip: frames, labels, backward flow (colour wheel) and the occluded pixels
    (red: not visible in the previous frame). Returns a few statistics of the clip."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    start = time.perf_counter()
    clip = render_clip(seed, num_frames, height, width, num_classes)
    seconds = time.perf_counter() - start
    classes = _class_set(num_classes)
    times = np.unique(np.linspace(0, num_frames - 1, columns).round().astype(int))
    mags = np.hypot(clip["flow_bwd"][1:, 0], clip["flow_bwd"][1:, 1]) if num_frames > 1 else np.zeros(1)
    vmax = float(np.percentile(mags, 99)) if mags.size else 1.0
    fig, axes = plt.subplots(4, len(times), figsize=(3.2 * len(times), 4 * 1.7 * height / width * 1.9 + 0.6),
                             squeeze=False)
    for j, t in enumerate(times):
        occ = clip["frames"][t].copy()
        occ[clip["occ_bwd"][t]] = (255, 0, 0)
        for i, (image, title) in enumerate([
                (clip["frames"][t], f"frame {t}"), (colorize(clip["labels"][t], classes), "labels"),
                (flow_to_color(clip["flow_bwd"][t], vmax), f"flow t→t−1 (max {vmax:.1f} px)"),
                (occ, "occluded in t−1 (red)")]):
            axes[i, j].imshow(image)
            axes[i, j].set_title(title, fontsize=8)
            axes[i, j].axis("off")
    present = np.unique(clip["labels"])
    names = ", ".join(classes.names[c] for c in present if c < classes.num_classes)
    fig.suptitle(f"synthetic clip seed {seed}, {height}×{width}, {num_frames} frames "
                 f"(rendered in {seconds:.2f} s)\nclasses: {names}", fontsize=8)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return {"seconds": seconds, "flow_p50": float(np.median(mags)), "flow_p99": vmax,
            "occluded": float(clip["occ_bwd"][1:].mean()) if num_frames > 1 else 0.0}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m dataset.synthetic",
        description="Write synthetic driving clips in a real data set's layout and/or save a preview figure.")
    parser.add_argument("--out", help="root folder of the layout to write")
    parser.add_argument("--layout", choices=("cityscapes", "camvid", "segnet"), default="cityscapes")
    parser.add_argument("--split", action="append", choices=sorted(SPLIT_CODES),
                        help="split(s) to write (repeatable; default train and val)")
    parser.add_argument("--num-clips", type=int, default=4, help="clips per split")
    parser.add_argument("--frames", type=int, default=None,
                        help="frames per clip (default: 30 Cityscapes/CamVid, 20 SegNet, 10 preview)")
    parser.add_argument("--height", type=int, default=None, help="default 128 (Cityscapes, preview), 96 (CamVid)")
    parser.add_argument("--width", type=int, default=None, help="default 256 (Cityscapes, preview), 128 (CamVid)")
    parser.add_argument("--seed", type=int, default=0, help="base seed (layouts) / clip seed (preview)")
    parser.add_argument("--ext", default="png", help="SegNet layout frame extension (png or jpg)")
    parser.add_argument("--preview", help="save a preview figure of one clip to this PNG file")
    parser.add_argument("--classes", type=int, choices=(19, 11), default=19, help="preview label set")
    args = parser.parse_args(argv)
    if not args.out and not args.preview:
        parser.error("give --out DIR (with --layout) and/or --preview FILE.png")
    if args.out:
        cs = args.layout == "cityscapes"
        h = args.height or (128 if cs else 96)
        w = args.width or (256 if cs else 128)
        for split in args.split or ["train", "val"]:
            start = time.perf_counter()
            if args.layout == "cityscapes":
                entries = write_cityscapes_layout(args.out, split, args.num_clips, h, w, args.seed, args.frames or 30)
            elif args.layout == "camvid":
                entries = write_camvid_layout(args.out, split, args.num_clips, h, w, args.seed, args.frames or 30)
            else:
                entries = write_segnet_layout(args.out, split, args.num_clips, h, w, args.seed, args.frames or 20,
                                              ext=args.ext)
            print(f"{args.layout} {split}: {args.num_clips} clips, {len(entries)} labelled frames at {h}x{w} "
                  f"in {time.perf_counter() - start:.1f} s -> {Path(args.out) / (split + '.txt')}")
    if args.preview:
        stats = save_preview(args.preview, args.seed, args.frames or 10, args.height or 128, args.width or 256,
                             args.classes)
        print(f"preview -> {args.preview}: rendered in {stats['seconds']:.2f} s, median flow "
              f"{stats['flow_p50']:.2f} px, p99 {stats['flow_p99']:.2f} px, occluded {100 * stats['occluded']:.1f}%")


if __name__ == "__main__":
    main()
