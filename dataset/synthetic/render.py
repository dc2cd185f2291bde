"""Rendering clips of the synthetic street scene: frames, labels, flows, occlusion and depth."""

from __future__ import annotations

import numpy as np

from ..labels import CITYSCAPES
from .camera import Camera
from .classes import TRAINID_TO_CAMVID, class_set
from .flow import flow_between, pair_flow
from .raycast import ray_cast
from .scene import build_scene
from .shading import shade_frame


def check_size(height: int, width: int) -> None:
    """Reject images smaller than 8×8 pixels."""
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
    check_size(height, width)
    classes = class_set(num_classes)
    scene = build_scene(int(seed), num_frames)
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
        cam = Camera(scene, float(t), H, W)
        geo = ray_cast(scene, cam, float(t))
        rgb, lab = shade_frame(scene, cam, geo)
        np.rint(rgb * 255.0, out=rgb)
        out["frames"][t] = rgb
        out["labels"][t] = lab if classes is CITYSCAPES else TRAINID_TO_CAMVID[lab]
        if depth:
            out["depth"][t] = geo["depth"]
        if flows and prev is not None:
            pcam, pgeo = prev
            out["flow_bwd"][t], occ = flow_between(scene, cam, t, geo, pcam, t - 1, pgeo if occlusion else None)
            if occ is not None:
                out["occ_bwd"][t] = occ
            out["flow_fwd"][t - 1], occ = flow_between(scene, pcam, t - 1, pgeo, cam, t, geo if occlusion else None)
            if occ is not None:
                out["occ_fwd"][t - 1] = occ
        prev = (cam, geo)
    return out


def render_flow(seed: int, num_frames: int, height: int, width: int, source: int, target: int,
                occlusion: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """Exact flow (2, H, W) float32 from frame ``source`` to frame ``target`` of clip ``seed``
    (computed directly from the scene, not composed), and optionally the occlusion mask (H, W)."""
    check_size(height, width)
    scene = build_scene(int(seed), num_frames)
    return pair_flow(scene, height, width, source, target, occlusion)
