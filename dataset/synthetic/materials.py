"""Surface textures of the scene's objects: one shader per primitive kind (façades with windows and
shop fronts, walls, fences, poles, signs, traffic lights, trees, hedges, cars, people).

A shader maps the hits on primitives ``pid`` (N,) to colours (N, 3) float32 before lighting, from
``q`` (3, N): the hit point relative to the box's low corner in metres (ellipsoids: the point on the
unit sphere), ``face`` = (axis (N,) of the face normal, whether it is the upper face along that
axis (N,), box size (3, N)), None for ellipsoids, and ``fp`` (N,): the pixel footprint in metres,
which fades out details too fine for the pixel (anti-aliasing).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .noise import detail_weight, fbm, frac, lattice_hash, stripe, value_noise
from .primitives import (
    K_BUILDING,
    K_CABIN,
    K_CANOPY,
    K_CAR,
    K_FENCE,
    K_HEDGE,
    K_LIGHT,
    K_PERSON,
    K_POLE,
    K_SIGN,
    K_TRUNK,
    K_WALL,
)

Face = tuple[np.ndarray, np.ndarray, np.ndarray]
Shader = Callable[[dict, np.ndarray, np.ndarray, Face | None, np.ndarray], np.ndarray]


def _face_uv(q: np.ndarray, face: Face) -> tuple[np.ndarray, np.ndarray]:
    """Face coordinates: horizontal along the face, vertical (y) for side faces."""
    axis = face[0]
    u = np.where(axis == 0, q[2], q[0])
    v = np.where(axis == 1, q[2], q[1])
    return u, v


def _shade_building(scene: dict, pid: np.ndarray, q: np.ndarray, face: Face | None, fp: np.ndarray) -> np.ndarray:
    par = scene["params"][pid].T
    floor_h, spacing, ww, wh, shop, uoff, _office, grain = par
    color = scene["color"][pid]
    glass = scene["color2"][pid]
    tex = scene["tex"][pid]
    axis, _, size = face
    u, v = _face_uv(q, face)
    height = size[1]
    f = fp
    wall = 1 + 0.25 * fbm(u, v, tex, 4.0, 2, f) * (grain * 8) + 0.12 * fbm(u, v, tex + 3, 0.8, 2, f)
    col = color * wall[:, None]
    # plinth
    col = col * (1 - 0.2 * stripe(v - 0.25, 0.25, f))[:, None]
    # floor bands
    band = stripe(frac(v / floor_h) * floor_h - 0.1, 0.1, f) * (v > floor_h * 0.9)
    col = col * (1 - 0.18 * band[:, None])
    # windows
    fu = (u + uoff) / spacing
    fv = v / floor_h
    col_i, row_i = np.floor(fu), np.floor(fv)
    inwin = stripe(frac(fu) - 0.5, ww / 2, f / spacing) * stripe(frac(fv) - 0.55, wh / 2, f / floor_h)
    ground = v <= floor_h
    upper_floor = ((v > floor_h) | (shop < 0.5)) & (v < height - 0.8)  # without shops: windows from the ground floor
    shopwin = shop * ground * stripe(frac(u / 5.0) - 0.5, 0.38, f / 5.0) * stripe(v - 1.45, 1.0, f)
    door = (shop < 0.5) * ground * stripe(frac(fu / 3.0) - 0.5, 0.5 * ww / 3.0, f / (3.0 * spacing)) \
        * stripe(v - 1.05, 1.05, f)
    win = np.maximum(inwin * upper_floor * (1 - door), shopwin)
    # per-window reflection / light
    refl = lattice_hash(col_i, row_i, tex + 17)
    wcol = glass * (0.6 + 0.9 * refl)[:, None] + np.where(refl > 0.93, 0.35, 0.0)[:, None]
    # frame around windows
    frame = np.clip(stripe(frac(fu) - 0.5, ww / 2 + 0.08 / spacing, f / spacing)
                    * stripe(frac(fv) - 0.55, wh / 2 + 0.08 / floor_h, f / floor_h) * upper_floor - win, 0, 1)
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


def _shade_wall(scene: dict, pid: np.ndarray, q: np.ndarray, face: Face | None, fp: np.ndarray) -> np.ndarray:
    color = scene["color"][pid]
    tex = scene["tex"][pid]
    u, v = _face_uv(q, face)
    block = scene["params"][pid, 0]
    shift = np.floor(v / block) * 0.5
    inside = stripe(frac(u / (2 * block) + shift) - 0.5, 0.5 - 0.02 / block, fp / block) * \
        stripe(frac(v / block) - 0.5, 0.5 - 0.04 / block, fp / block)
    g = (0.8 + 0.2 * inside) * (1 + 0.3 * fbm(u, v, tex, 2.0, 3, fp))
    return (color * g[:, None]).astype(np.float32)


def _shade_fence(scene: dict, pid: np.ndarray, q: np.ndarray, face: Face | None, fp: np.ndarray) -> np.ndarray:
    color = scene["color"][pid]
    slat, rail_h = scene["params"][pid].T[:2]
    u, v = _face_uv(q, face)
    s = stripe(frac(u / slat) - 0.5, 0.3, fp / slat)
    top = np.take_along_axis(face[2], np.ones((1, u.size), np.int64), 0)[0]
    rail = np.maximum(stripe(v - rail_h, 0.05, fp), stripe(v - (top - 0.1), 0.05, fp))
    g = 0.45 + 0.55 * np.maximum(s, rail)
    return (color * g[:, None]).astype(np.float32)


def _shade_pole(scene: dict, pid: np.ndarray, q: np.ndarray, face: Face | None, fp: np.ndarray) -> np.ndarray:
    color = scene["color"][pid]
    u, v = _face_uv(q, face)
    g = 1 + 0.1 * fbm(u * 4, v, scene["tex"][pid], 1.0, 2, fp)
    return (color * g[:, None]).astype(np.float32)


def _shade_sign(scene: dict, pid: np.ndarray, q: np.ndarray, face: Face | None, fp: np.ndarray) -> np.ndarray:
    inner, border = scene["color"][pid], scene["color2"][pid]
    axis, upper, size = face
    u, v = _face_uv(q, face)
    w = np.take_along_axis(size, np.zeros((1, u.size), np.int64), 0)[0]
    hgt = np.take_along_axis(size, np.ones((1, u.size), np.int64), 0)[0]
    cu, cv = u - w / 2, v - hgt / 2
    round_ = scene["params"][pid, 0] > 0.5
    r = np.where(round_, np.sqrt(cu * cu + cv * cv), np.maximum(np.abs(cu), np.abs(cv)))
    ring = stripe(r - 0.5 * w + 0.06, 0.06, fp)
    symbol = stripe(r, 0.12 * w, fp)
    col = inner * (1 - ring)[:, None] + border * ring[:, None]
    col = col * (1 - symbol)[:, None] + np.float32(0.92) * symbol[:, None]
    outline = stripe(r - 0.5 * w, 0.02 * w, fp)[:, None]
    col = col * (1 - 0.4 * outline)
    front = (axis == 2) & ~upper
    back = np.array([0.5, 0.5, 0.52], np.float32)
    return np.where(front[:, None], col, back).astype(np.float32)


def _shade_light(scene: dict, pid: np.ndarray, q: np.ndarray, face: Face | None, fp: np.ndarray) -> np.ndarray:
    axis, upper, _ = face
    u, v = _face_uv(q, face)
    lit = scene["params"][pid, 0]
    col = np.full((u.size, 3), 0.08, np.float32)
    front = (axis == 2) & ~upper
    colors = np.array([[0.2, 0.9, 0.3], [0.95, 0.7, 0.1], [0.95, 0.15, 0.1]], np.float32)
    for k in range(3):
        lamp = stripe(np.sqrt((u - 0.18) ** 2 + (v - (0.2 + 0.3 * k)) ** 2), 0.1, fp) * front
        on = np.where(lit == k, 1.0, 0.25)
        col += (lamp * on)[:, None] * colors[k]
    return col


def _shade_trunk(scene: dict, pid: np.ndarray, q: np.ndarray, face: Face | None, fp: np.ndarray) -> np.ndarray:
    u, v = _face_uv(q, face)
    g = 1 + 0.4 * fbm(u * 6, v * 0.6, scene["tex"][pid], 0.5, 2, fp)
    return (scene["color"][pid] * g[:, None]).astype(np.float32)


def _leaves(scene: dict, pid: np.ndarray, a: np.ndarray, b: np.ndarray, fp: np.ndarray) -> np.ndarray:
    """Foliage texture at surface coordinates (a, b) in metres."""
    tex = scene["tex"][pid]
    g = 1 + 0.9 * fbm(a, b, tex, 1.2, 4, fp)
    spots = np.clip(value_noise(a / 0.35, b / 0.35, tex + 5) * 3 - 2, 0, 1) * detail_weight(fp, 0.35)
    col = scene["color"][pid] * g[:, None]
    return (col * (1 - 0.45 * spots)[:, None]).astype(np.float32)


def _shade_canopy(scene: dict, pid: np.ndarray, q: np.ndarray, face: Face | None, fp: np.ndarray) -> np.ndarray:
    # q: point on the unit sphere of the ellipsoid; texture in metres via the radii
    rad = 0.5 * (scene["hi"][pid] - scene["lo"][pid]).T
    a = np.arctan2(q[0], -q[2]) * 0.5 * (rad[0] + rad[2])  # seam on the far (+z) side
    b = q[1] * rad[1]
    return _leaves(scene, pid, a, b, fp * 1.5)


def _shade_hedge(scene: dict, pid: np.ndarray, q: np.ndarray, face: Face | None, fp: np.ndarray) -> np.ndarray:
    u, v = _face_uv(q, face)
    return _leaves(scene, pid, u, v, fp)


def _shade_car(scene: dict, pid: np.ndarray, q: np.ndarray, face: Face | None, fp: np.ndarray) -> np.ndarray:
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
    wheel = np.maximum(stripe(np.sqrt((u - 0.8) ** 2 + (v - 0.33) ** 2), 0.33, fp),
                       stripe(np.sqrt((u - (sz - 0.8)) ** 2 + (v - 0.33) ** 2), 0.33, fp))
    hub = np.maximum(stripe(np.sqrt((u - 0.8) ** 2 + (v - 0.33) ** 2), 0.13, fp),
                     stripe(np.sqrt((u - (sz - 0.8)) ** 2 + (v - 0.33) ** 2), 0.13, fp))
    door = stripe(u - 0.5 * sz, 0.015, fp) * (v > 0.35)
    van_win = van * stripe(v - (sy - 0.45), 0.22, fp) * stripe(u - 0.5 * sz, 0.5 * sz - 0.4, fp)
    dark = np.where(side, np.maximum.reduce([wheel * (1 - 0.5 * hub), door * 0.6, stripe(v, 0.12, fp), van_win]), dark)
    # front and back
    endf = axis == 2
    is_front = endf & (upper == (heading > 0))
    cu = u - 0.5 * sx
    lamp_v = stripe(v - 0.75, 0.08, fp)
    lamps = lamp_v * np.maximum(stripe(cu - (0.5 * sx - 0.25), 0.15, fp), stripe(cu + (0.5 * sx - 0.25), 0.15, fp))
    plate = stripe(cu, 0.26, fp) * stripe(v - 0.42, 0.07, fp)
    bumper = stripe(v - 0.12, 0.12, fp)
    grille = stripe(cu, 0.45, fp) * stripe(v - 0.55, 0.1, fp)
    back_win = van * stripe(v - (sy - 0.45), 0.22, fp) * stripe(cu, 0.5 * sx - 0.2, fp)
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


def _shade_cabin(scene: dict, pid: np.ndarray, q: np.ndarray, face: Face | None, fp: np.ndarray) -> np.ndarray:
    color = scene["color"][pid]
    axis, _, size = face
    u, v = _face_uv(q, face)
    sx, sy, sz = size
    glass = np.array([0.1, 0.12, 0.15], np.float32) * (1 + 0.5 * fbm(u, v, scene["tex"][pid], 2.0, 1, fp))[:, None]
    side = axis == 0
    win_side = stripe(u - 0.5 * sz, 0.5 * sz - 0.15, fp) * stripe(v - 0.5 * sy, 0.5 * sy - 0.05, fp) * \
        (1 - stripe(u - 0.5 * sz, 0.05, fp))
    win_end = stripe(u - 0.5 * sx, 0.5 * sx - 0.12, fp) * stripe(v - 0.5 * sy, 0.5 * sy - 0.05, fp)
    win = np.where(side, win_side, np.where(axis == 2, win_end, 0.0))
    return (color * (1 - win)[:, None] + glass * win[:, None]).astype(np.float32)


def _shade_person(scene: dict, pid: np.ndarray, q: np.ndarray, face: Face | None, fp: np.ndarray) -> np.ndarray:
    part = scene["params"][pid, 0]
    color = scene["color"][pid]
    u, v = _face_uv(q, face)
    g = 1 + 0.25 * fbm(u * 3, v * 3, scene["tex"][pid], 0.6, 2, fp)
    col = color * g[:, None]
    head_h = scene["params"][pid, 1]
    hair = (part == 2) & ((v > 0.6 * head_h) | (face[0] == 1))
    return np.where(hair[:, None], scene["color2"][pid], col).astype(np.float32)


#: primitive kind → its shader (the ground and the sky are shaded by :mod:`.shading`)
SHADERS: dict[int, Shader] = {
    K_BUILDING: _shade_building, K_WALL: _shade_wall, K_FENCE: _shade_fence, K_POLE: _shade_pole,
    K_SIGN: _shade_sign, K_LIGHT: _shade_light, K_TRUNK: _shade_trunk, K_CANOPY: _shade_canopy,
    K_HEDGE: _shade_hedge, K_CAR: _shade_car, K_CABIN: _shade_cabin, K_PERSON: _shade_person,
}

