"""The camera of a clip: a pinhole camera that drives forward along the street.

Its path (speed, acceleration, lateral sway, bounce, yaw and pitch oscillation) is the ``cam`` dict
of a scene; :class:`Camera` is its pose and intrinsics at one frame. Pixel centres are at integer
coordinates; camera axes: right, up, forward.
"""

from __future__ import annotations

import math

import numpy as np


def camera_z(cam: dict[str, float], t: float) -> float:
    """Distance (m) the camera has driven along Z at frame t (constant acceleration)."""
    return cam["speed"] * t + 0.5 * cam["accel"] * t * t


class Camera:
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
            camera_z(cam, t),
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
