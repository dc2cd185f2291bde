"""Seeds of the clips of the train / val / test splits (disjoint between splits)."""

from __future__ import annotations

SPLIT_CODES = {"train": 0, "val": 1, "test": 2}


def clip_seed(split: str, index: int, seed: int = 0) -> int:
    """Seed of clip ``index`` of a split; the seeds of different splits never coincide."""
    if split not in SPLIT_CODES:
        raise ValueError(f"split must be one of {sorted(SPLIT_CODES)}, got {split!r}")
    if index < 0 or seed < 0:
        raise ValueError("clip index and seed must be non-negative")
    return ((seed * 1_000_003 + index) * 4) + SPLIT_CODES[split]

