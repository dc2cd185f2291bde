"""Shading of a ray-cast frame: colour and trainId label per pixel.

Textures are evaluated in each surface's own coordinates, so they move with the surface, and the
light depends only on the surface normal, so colours are constant over time except for a faint
distance haze. The ground (road, sidewalk, terrain zones and markings) and the sky are shaded here,
every other primitive kind by its shader in :mod:`.materials`.
"""

from __future__ import annotations

import numpy as np

from .camera import Camera
from .classes import ROAD, SIDEWALK, SKY, TERRAIN
from .materials import SHADERS
from .noise import detail_weight, fbm, frac, lattice_hash, stripe, value_noise
from .primitives import K_CANOPY, K_GROUND, K_SKY


def shade_frame(scene: dict, cam: Camera, geo: dict) -> tuple[np.ndarray, np.ndarray]:
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
            col = SHADERS[kind](scene, pid, q, face, fpn)
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
    """Sky colour (N, 3) for world view directions ``d`` (3, N): gradient from the haze at the
    horizon to ``sky_top``, clouds on a plane at infinity."""
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
    c = fbm(x, y, seed + 11, 1.5, 3, fp) + 0.5
    cover = np.clip((c - (1 - style["cloud"])) * 3.0, 0, 1)[:, None] * np.clip(elev * 8, 0, 1)[:, None]
    cloud = np.array([0.95, 0.95, 0.96], np.float32) * (0.8 + 0.2 * c[:, None])
    return (col * (1 - cover) + cloud * cover).astype(np.float32)


def _lot_lookup(lots: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Lot type, yard flag and "inside a side street" at world z for one side; z outside all lots →
    building, paving."""
    i = np.searchsorted(lots[:, 0], z, side="right") - 1
    inside = (i >= 0) & (z < lots[np.clip(i, 0, None), 1])
    i = np.clip(i, 0, len(lots) - 1)
    kind = np.where(inside, lots[i, 2], 0).astype(np.int64)
    yard = np.where(inside, lots[i, 3], 0)
    z0, z1 = lots[i, 0], lots[i, 1]
    in_street = (kind == 1) & (z > z0 + 1.0) & (z < z1 - 1.0)
    return kind, yard, in_street


def _shade_ground(scene: dict, P: np.ndarray, fp: np.ndarray,
                  fp_across: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Colour (N, 3) and trainId (N,) of ground points ``P`` (3, N): road with markings and zebra
    crossings, sidewalks with tiles and kerb, terrain; ``fp`` is the pixel footprint (m) along the
    ground, ``fp_across`` across the ray."""
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
        g = road["asphalt"] + 0.10 * fbm(x, z * 0.5, seed + 1, 8.0, 2, f) + 0.07 * fbm(x, z, seed + 2, 0.6, 3, f)
        # worn wheel tracks
        lane = frac(np.abs(x) / road["lane_w"]) * road["lane_w"]
        g -= 0.025 * (stripe(lane - 0.5 * road["lane_w"] - 0.85, 0.35, f)
                      + stripe(lane - 0.5 * road["lane_w"] + 0.85, 0.35, f))
        mark = np.zeros_like(g)
        fa = fp_across[m]
        lw = road["lane_w"]
        inner = (x > -road["n_left"] * lw - 0.2) & (x < road["n_right"] * lw + 0.2)
        if road["double_centre"]:
            mark = np.maximum(mark, stripe(x - 0.15, 0.06, fa) + stripe(x + 0.15, 0.06, fa))
        else:
            mark = np.maximum(mark, stripe(x, 0.07, fa) * stripe(frac(z / road["period"]) * road["period"]
                                                                 - road["dash"] / 2, road["dash"] / 2, f))
        for k in list(range(1, road["n_right"])) + [-k for k in range(1, road["n_left"])]:
            dash = stripe(frac(z / road["period"] + 0.3) * road["period"] - road["dash"] / 2, road["dash"] / 2, f)
            mark = np.maximum(mark, stripe(x - k * lw, 0.07, fa) * dash)
        mark = np.maximum(mark, stripe(x - road["n_right"] * lw, 0.08, fa) + stripe(x + road["n_left"] * lw, 0.08, fa))
        mark *= inner
        # zebra crossings
        cz = scene["crossings"]
        j = np.clip(np.searchsorted(cz, z), 1, len(cz) - 1) if len(cz) > 1 else np.zeros(z.shape, np.int64)
        dz = np.minimum(np.abs(z - cz[j]), np.abs(z - cz[j - 1])) if len(cz) > 1 else np.abs(z - cz[0])
        zebra = stripe(dz, 2.0, f) * stripe(frac(x / 1.1) - 0.5, 0.25, fa / 1.1) * inner
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
        tile = lattice_hash(ix, iz, seed + 3) - 0.5
        inside = stripe(frac(x / ts) - 0.5, 0.5 - 0.03 / ts, f / ts) \
            * stripe(frac(z / ts) - 0.5, 0.5 - 0.03 / ts, f / ts)
        grout = 0.75 + 0.25 * inside
        g = road["paving"] * grout * (1 + 0.12 * tile * detail_weight(f, ts)) + 0.06 * fbm(x, z, seed + 4, 3.0, 2, f)
        axm = ax[m]
        kerb = stripe(axm - 0.12, 0.12, f)
        g = g * (1 - kerb) + 0.75 * kerb
        col[m] = np.stack([g * 1.02, g, g * 0.96], 1)
    m = cls == TERRAIN
    if np.any(m):
        x, z, f = X[m], Z[m], fp[m]
        a = fbm(x, z, seed + 5, 4.0, 3, f)
        dirt = np.clip(value_noise(x / 6, z / 6, seed + 6) * 2.2 - 1.3, 0, 1)
        grass = np.array([0.30, 0.42, 0.16], np.float32) * (1 + 0.5 * a)[:, None]
        soil = np.array([0.45, 0.38, 0.27], np.float32) * (1 + 0.3 * a)[:, None]
        col[m] = grass * (1 - dirt[:, None]) + soil * dirt[:, None]
    return col, cls

