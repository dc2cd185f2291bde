"""Training windows (dataset/windows.py) and their build_dataset(mode="windows") entry."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from dataset import AugmentedWindows, SyntheticClipWindows, build_dataset, train_transform
from dataset.synthetic import SyntheticVideoDataset


def test_synthetic_training_windows_are_the_stage1_frames():
    """Recurrent training sees exactly the scenes and frames of the per-frame training set."""
    windows = SyntheticClipWindows("train", 2, 6, 32, 64, 19, 3, 0)
    assert len(windows) == 2 * 4
    pairs = SyntheticVideoDataset("train", "train", num_clips=2, clip_len=6, height=32, width=64, offsets=(-1,))
    window = windows[windows.items.index((1, 2))]                       # frames 2, 3, 4 of clip 1
    pair = pairs[next(i for i, (c, t, _) in enumerate(pairs.items) if (c, t) == (1, 4))]   # frames 3, 4
    assert torch.equal(window["frames"][1:], pair["frames"]) and torch.equal(window["label"], pair["label"])
    assert window["labels"].shape == (3, 32, 64)


def test_build_dataset_windows_mode_augments_whole_windows():
    transform = train_transform((24, 40), 255, None, 1.0)
    built = build_dataset("synthetic", split="train", mode="windows", length=3, transform=transform, seed=5,
                          num_clips=1, clip_len=4, height=32, width=64, num_classes=19)
    assert isinstance(built, AugmentedWindows) and len(built) == 2
    plain = SyntheticClipWindows("train", num_clips=1, clip_len=4, height=32, width=64, length=3, seed=5)
    expected = transform(plain[1], np.random.default_rng((5, 0, 1)))
    sample = built[1]
    assert sample["frames"].shape == (3, 3, 24, 40) and sample["labels"].shape == (3, 24, 40)
    assert torch.equal(sample["frames"], expected["frames"]) and torch.equal(sample["label"], expected["label"])
    with pytest.raises(TypeError, match="window length"):
        build_dataset("synthetic", split="train", mode="windows", num_clips=1)
    with pytest.raises(ValueError, match="clip_len 2"):
        SyntheticClipWindows("train", num_clips=1, clip_len=2, length=3)
