"""Ray casting of one frame: one ray per pixel centre against the ground plane and the primitives
in their screen-space bounding boxes, front to back; the nearest hit wins."""

from __future__ import annotations

import numpy as np

from .camera import Camera
from .primitives import BOX, primitive_offsets

NEAR = 0.05  # nearest accepted hit (m)


def ray_cast(scene: dict, cam: Camera, t: float) -> dict[str, np.ndarray]:
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

    off = primitive_offsets(scene, t)
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

