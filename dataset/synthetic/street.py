"""What lines each side of the street: lots (buildings with façades, side streets, parks with
trees, hedges and fences, walls) and street furniture (poles with traffic signs or lights, trees)."""

from __future__ import annotations

import numpy as np

from .classes import BUILDING, FENCE, LIGHT, POLE, SIGN, VEGETATION, WALL
from .primitives import (
    ELLIPSOID,
    K_BUILDING,
    K_CANOPY,
    K_FENCE,
    K_HEDGE,
    K_LIGHT,
    K_POLE,
    K_SIGN,
    K_TRUNK,
    K_WALL,
    PrimitiveTable,
)

_FACADE_COLORS = np.array([
    (0.78, 0.72, 0.60), (0.62, 0.34, 0.26), (0.60, 0.60, 0.58), (0.86, 0.85, 0.80), (0.40, 0.37, 0.35),
    (0.80, 0.70, 0.45), (0.55, 0.62, 0.68), (0.70, 0.55, 0.45), (0.50, 0.45, 0.40), (0.72, 0.66, 0.62),
])


def add_street_side(prims: PrimitiveTable, r: np.random.Generator, rf: np.random.Generator, side: int,
                    road: dict, z_end: float, crossings: list[float]) -> None:
    """Lots (buildings, side streets, parks, walls) and street furniture along one side (+1 right,
    −1 left) up to ``z_end``; ``r`` draws the lots, ``rf`` the furniture. Records the lots in
    ``road["lots_r" / "lots_l"]`` and appends the side streets' Z to ``crossings``."""
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


def _add_building(prims: PrimitiveTable, r: np.random.Generator, xs: tuple[float, float],
                  zs: tuple[float, float], height: float, side: int) -> None:
    """A building filling the world box ``xs × [0, height] × zs``, with a façade drawn from ``r``."""
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


def _add_tree(prims: PrimitiveTable, r: np.random.Generator, x: float, z: float, big: bool) -> None:
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


def _add_pole(prims: PrimitiveTable, r: np.random.Generator, x: float, z: float, side: int) -> None:
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

