"""Pictures of predictions: the colourised segmentation over a frame, and a distortion map as a heat map."""
from __future__ import annotations

from typing import Optional

import cv2
import numpy as np
import torch

__all__ = ["overlay", "distortion_image", "mark_keyframe"]

KEYFRAME_RGB = (230, 30, 30)


def overlay(frame_rgb: np.ndarray, colour: np.ndarray, alpha: float) -> np.ndarray:
    """``colour`` blended over ``frame_rgb`` with opacity ``alpha`` (both H×W×3 uint8 RGB)."""
    return cv2.addWeighted(colour, alpha, frame_rgb, 1.0 - alpha, 0.0)


def mark_keyframe(picture: np.ndarray, keyframe: bool, distortion: Optional[float] = None) -> np.ndarray:
    """``picture`` (H×W×3 uint8 RGB) with a keyframe schedule's decision drawn on it: keyframes get a
    red border and "KEY"; the distortion statistic the schedule read, when it read one, is written
    beside it. Returns a new array."""
    out = picture.copy()
    h, w = out.shape[:2]
    scale = max(0.35, min(h, w) / 400)
    thickness = max(1, round(scale * 2))
    label = "KEY" if keyframe else ""
    if distortion is not None:
        label = f"{label} d={distortion:.3f}".strip()
    if keyframe:
        cv2.rectangle(out, (0, 0), (w - 1, h - 1), KEYFRAME_RGB, max(2, thickness * 2))
    if label:
        colour = KEYFRAME_RGB if keyframe else (255, 255, 255)
        origin = (max(4, thickness * 3), max(12, round(24 * scale)))
        cv2.putText(out, label, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thickness + 2, cv2.LINE_AA)
        cv2.putText(out, label, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, colour, thickness, cv2.LINE_AA)
    return out


def distortion_image(dm: Optional[torch.Tensor], height: int, width: int) -> np.ndarray:
    """A distortion map (1×1×h×w in [0, 1], cropped to ``height``×``width``) as an H×W×3 uint8 RGB jet
    heat map; None (a keyframe, which has no map) gives black."""
    if dm is None:
        return np.zeros((height, width, 3), np.uint8)
    grey = (dm[0, 0, :height, :width].clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
    return cv2.cvtColor(cv2.applyColorMap(grey, cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)
