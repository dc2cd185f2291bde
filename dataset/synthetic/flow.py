"""Exact optical flow and occlusion between any two frames of a scene.

Each pixel's scene point is known, so its position in another frame s is too:
``P_s = P_t + offset_k(s) − offset_k(t)`` for primitive k, projected with camera s (sky: the viewing
direction, projected with camera s's rotation only). Occlusion is a depth test against frame s's
depth buffer. Flows between distant frames are computed directly, never composed.

Convention: ``flow[:, y, x] = (dx, dy)`` in pixels, pixel centres at integer coordinates; the pixel
(x, y) of the source frame is found at (x + dx, y + dy) in the target frame, so sampling the target
frame at those positions (``grid_sample`` / Resample2d style backward warping) reproduces the
source frame.
"""

from __future__ import annotations

import numpy as np

from .camera import Camera
from .primitives import primitive_offsets
from .raycast import NEAR, ray_cast


def flow_between(scene: dict, cam_t: Camera, t: float, geo_t: dict, cam_s: Camera, s: float,
                 geo_s: dict | None) -> tuple[np.ndarray, np.ndarray | None]:
    """Exact flow (2, H, W) from frame t to frame s and, given frame s's geometry, the occlusion
    mask (True where the pixel's scene point is hidden or outside the image in frame s)."""
    H, W = cam_t.height, cam_t.width
    depth, ids, d = geo_t["depth"], geo_t["ids"], geo_t["dirs"]
    sky = ids < 0
    # per primitive: its displacement t → s plus the camera displacement; sky (row −1): none
    table = primitive_offsets(scene, s) - primitive_offsets(scene, t)
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


def pair_flow(scene: dict, height: int, width: int, source: int, target: int,
              occlusion: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """Flow (2, H, W) from frame ``source`` to frame ``target`` of a built scene, ray-casting both
    frames, and the occlusion mask (H, W) when ``occlusion`` (else None)."""
    if source == target:
        return np.zeros((2, height, width), np.float32), (np.zeros((height, width), bool) if occlusion else None)
    cam_a = Camera(scene, float(source), height, width)
    cam_b = Camera(scene, float(target), height, width)
    geo_a = ray_cast(scene, cam_a, float(source))
    geo_b = ray_cast(scene, cam_b, float(target)) if occlusion else None
    return flow_between(scene, cam_a, source, geo_a, cam_b, target, geo_b)

