"""The moving parts of a scene: parked, leading, overtaking and oncoming cars (a body and a cabin
box) and pedestrians on the sidewalks and crossing the road (torso, head and two legs that swing
relative to the body: non-rigid motion)."""

from __future__ import annotations

import math

import numpy as np

from .classes import CAR, PERSON
from .primitives import K_CABIN, K_CAR, K_PERSON, PrimitiveTable, scene_rng

_CAR_COLORS = np.array([
    (0.85, 0.85, 0.85), (0.08, 0.08, 0.09), (0.55, 0.56, 0.58), (0.60, 0.10, 0.08), (0.12, 0.22, 0.50),
    (0.30, 0.32, 0.34), (0.75, 0.70, 0.55), (0.15, 0.35, 0.20), (0.90, 0.80, 0.20), (0.35, 0.15, 0.10),
])
_CLOTH_COLORS = np.array([
    (0.10, 0.10, 0.12), (0.20, 0.25, 0.45), (0.55, 0.10, 0.10), (0.80, 0.78, 0.72), (0.35, 0.35, 0.30),
    (0.15, 0.35, 0.25), (0.60, 0.45, 0.25), (0.85, 0.55, 0.15), (0.45, 0.20, 0.45), (0.25, 0.25, 0.25),
])
_SKIN_COLORS = np.array([(0.85, 0.68, 0.55), (0.65, 0.47, 0.35), (0.42, 0.30, 0.22), (0.93, 0.78, 0.66)])


def _add_car(prims: PrimitiveTable, r: np.random.Generator, x: float, z: float, vz: float, heading: int) -> None:
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


def add_traffic(prims: PrimitiveTable, seed: int, road: dict, cam: dict, frames: int, z_end: float) -> None:
    """Parked cars, cars in the camera's direction (a leader in its lane, overtakers in the others)
    and oncoming cars, for a clip of ``frames`` frames up to ``z_end``."""
    lane_w = road["lane_w"]
    speed = cam["speed"]
    # parked cars
    for side, park, stream in ((1, road["park_r"], 20), (-1, road["park_l"], 21)):
        if park <= 0:
            continue
        r = scene_rng(seed, stream)
        x_edge = road["right"] if side > 0 else road["left"]
        z = -40.0 + r.uniform(0, 8)
        while z < z_end:
            if r.random() < 0.7:
                _add_car(prims, r, x_edge - side * r.uniform(1.1, 1.3), z, 0.0, int(r.choice([-1, 1])))
            z += r.uniform(5.5, 14.0)
    # own direction lanes (x > 0)
    for lane in range(road["n_right"]):
        r = scene_rng(seed, 30 + lane)
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
        r = scene_rng(seed, 40 + lane)
        xc = -(lane + 0.5) * lane_w
        z = r.uniform(5, 40)
        while z < z_end + 0.8 * frames:
            _add_car(prims, r, xc + r.uniform(-0.3, 0.3), z, -r.uniform(0.15, 0.45), -1)
            z += r.uniform(15, 60)


def _add_person(prims: PrimitiveTable, r: np.random.Generator, x: float, z: float,
                vel: tuple[float, float]) -> None:
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


def add_pedestrians(prims: PrimitiveTable, seed: int, road: dict, cam: dict, frames: int, z_end: float,
                    crossings: list[float]) -> None:
    """Pedestrians walking along both sidewalks and crossing the road ahead (their Z is appended to
    ``crossings``, where zebra crossings are painted)."""
    for side, stream in ((1, 50), (-1, 51)):
        r = scene_rng(seed, stream)
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
    r = scene_rng(seed, 52)
    z = cam["speed"] * 30 + r.uniform(8, 30)
    while z < z_end:
        if r.random() < 0.6:
            direction = r.choice([-1, 1])
            start = road["left"] - 0.5 if direction > 0 else road["right"] + 0.5
            x = start + direction * r.uniform(0, road["right"] - road["left"])
            _add_person(prims, r, x, z, (direction * r.uniform(0.05, 0.09), 0.0))
            crossings.append(z)
        z += r.uniform(25, 70)

