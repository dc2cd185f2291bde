"""Deterministic, vectorised procedural noise and anti-aliased stripes: the texture building blocks.

All functions take numpy arrays of any shape (world or surface coordinates in metres) and a seed
(int or array) that selects a region of one fixed random lattice, so textures are identical across
runs and platforms.
"""

from __future__ import annotations

import numpy as np

_NOISE_N = 256
#: fixed random lattice (a constant of the generator: every clip samples it at seed-dependent offsets)
_NOISE = np.random.default_rng(0x5EED).random((_NOISE_N + 1, _NOISE_N + 1), dtype=np.float32)
_NOISE[_NOISE_N, :] = _NOISE[0, :]
_NOISE[:, _NOISE_N] = _NOISE[:, 0]
_NOISE_FLAT = _NOISE.reshape(-1)


def _seed_offsets(seed: np.ndarray | int) -> tuple[np.ndarray, np.ndarray]:
    """Integer lattice offsets in [0, 256) that select a seed's region of the noise lattice."""
    s = np.asarray(seed).astype(np.int64) & 0x7FFFFFFF
    return (s * 0x9E3779B1 >> 11) & (_NOISE_N - 1), (s * 0x85EBCA77 >> 13) & (_NOISE_N - 1)


def lattice_hash(ix: np.ndarray, iy: np.ndarray, seed: np.ndarray | int) -> np.ndarray:
    """Uniform [0, 1) float32 per integer lattice cell (any shape) and seed; period 256 cells."""
    ox, oy = _seed_offsets(seed)
    jx = (np.asarray(ix).astype(np.int64) + ox) & (_NOISE_N - 1)
    jy = (np.asarray(iy).astype(np.int64) + oy) & (_NOISE_N - 1)
    return _NOISE_FLAT[jy * (_NOISE_N + 1) + jx]


def value_noise(x: np.ndarray, y: np.ndarray, seed: np.ndarray | int) -> np.ndarray:
    """Smooth value noise in [0, 1] on a unit lattice (period 256)."""
    ox, oy = _seed_offsets(seed)
    fx, fy = np.floor(x), np.floor(y)
    tx, ty = x - fx, y - fy
    tx = tx * tx * (3 - 2 * tx)
    ty = ty * ty * (3 - 2 * ty)
    i = ((fy.astype(np.int64) + oy) & (_NOISE_N - 1)) * (_NOISE_N + 1) + ((fx.astype(np.int64) + ox) & (_NOISE_N - 1))
    a = _NOISE_FLAT[i]
    b = _NOISE_FLAT[i + 1]
    c = _NOISE_FLAT[i + (_NOISE_N + 1)]
    d = _NOISE_FLAT[i + (_NOISE_N + 2)]
    top = a + (b - a) * tx
    bottom = c + (d - c) * tx
    return top + (bottom - top) * ty


def detail_weight(footprint: np.ndarray, wavelength: float) -> np.ndarray:
    """Weight of a texture detail of ``wavelength`` metres given the pixel footprint (anti-aliasing):
    1 while a period spans ≥ 4 pixels, 0 below ~1.3 pixels."""
    return np.clip(1.5 - 2.0 * footprint / wavelength, 0.0, 1.0).astype(np.float32)


def fbm(x: np.ndarray, y: np.ndarray, seed: np.ndarray | int, scale: float, octaves: int,
        footprint: np.ndarray) -> np.ndarray:
    """Fractal noise in about [-0.5, 0.5]: octaves of wavelength scale, scale/2, ...; octaves too
    fine for the pixel footprint fade out."""
    total = np.zeros(np.shape(x), dtype=np.float32)
    amp, wavelength = 1.0, scale
    for octave in range(octaves):
        weight = amp * detail_weight(footprint, wavelength)
        if np.any(weight > 0):
            total += weight * (value_noise(x / wavelength, y / wavelength, np.asarray(seed) + 7919 * octave) - 0.5)
        amp *= 0.55
        wavelength *= 0.5
    return total


def stripe(distance: np.ndarray, half_width: float, footprint: np.ndarray) -> np.ndarray:
    """Anti-aliased coverage of a stripe: 1 inside ``|distance| < half_width``, soft over one pixel."""
    return np.clip((half_width - np.abs(distance)) / np.maximum(footprint, 1e-6) + 0.5, 0.0, 1.0)


def frac(x: np.ndarray) -> np.ndarray:
    """Fractional part ``x − floor(x)`` in [0, 1) (position inside a repeating pattern)."""
    return x - np.floor(x)

