"""Pictures of predictions: the colourised segmentation over a frame, and a distortion map as a heat map."""
from __future__ import annotations

from typing import Optional

import cv2
import numpy as np
import torch

__all__ = ["overlay", "distortion_image"]


def overlay(frame_rgb: np.ndarray, colour: np.ndarray, alpha: float) -> np.ndarray:
    """``colour`` blended over ``frame_rgb`` with opacity ``alpha`` (both H×W×3 uint8 RGB)."""
    return cv2.addWeighted(colour, alpha, frame_rgb, 1.0 - alpha, 0.0)


def distortion_image(dm: Optional[torch.Tensor], height: int, width: int) -> np.ndarray:
    """A distortion map (1×1×h×w in [0, 1], cropped to ``height``×``width``) as an H×W×3 uint8 RGB jet
    heat map; None (a keyframe, which has no map) gives black."""
    if dm is None:
        return np.zeros((height, width, 3), np.uint8)
    grey = (dm[0, 0, :height, :width].clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
    return cv2.cvtColor(cv2.applyColorMap(grey, cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)
