"""The synthetic data set (:class:`dataset.synthetic.SyntheticVideoDataset`): disjoint split seeds,
training pairs (frames, labels, edges, exact flow, augmentation draws) and evaluation windows."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dataset.edges import edge_label
from dataset.synthetic import SyntheticVideoDataset, clip_seed, render_clip

H, W = 64, 128


def test_split_seeds_are_disjoint():
    seeds = {split: {clip_seed(split, i, s) for i in range(2000) for s in range(3)} for split in ("train", "val", "test")}
    assert not seeds["train"] & seeds["val"] and not seeds["train"] & seeds["test"] and not seeds["val"] & seeds["test"]
    train = SyntheticVideoDataset("train", "eval", num_clips=3, clip_len=2, height=32, width=64, window=2)
    val = SyntheticVideoDataset("val", "eval", num_clips=3, clip_len=2, height=32, width=64, window=2)
    assert not {train.clip_seed(i) for i in range(3)} & {val.clip_seed(i) for i in range(3)}
    assert not torch.equal(train[0]["frames"], val[0]["frames"])
    with pytest.raises(ValueError):
        clip_seed("bogus", 0)



def test_training_samples():
    calls = []

    def transform(sample, rng):
        calls.append(rng.random())
        return sample

    ds = SyntheticVideoDataset("train", "train", num_clips=2, clip_len=8, height=H, width=W,
                               offsets=(-2, -1, 1, 3), transform=transform, seed=4, with_flow=True)
    assert len(ds) == 2 * 3 * 4  # labelled frames 2..4 of each clip, four offsets
    sample = ds[1]  # clip 0, labelled frame 2, offset −1
    assert sample["offset"] == sample["gap"] == -1 and isinstance(sample["id"], str)
    assert sample["frames"].shape == (2, 3, H, W) and sample["frames"].dtype == torch.float32
    assert 0 <= sample["frames"].min() and sample["frames"].max() <= 1
    assert sample["label"].shape == (H, W) and sample["label"].dtype == torch.int64
    assert sample["edge"].dtype == torch.int64 and set(sample["edge"].unique().tolist()) <= {0, 1}
    clip = render_clip(clip_seed("train", 0, 4), 8, H, W)
    np.testing.assert_array_equal(sample["frames"][1].permute(1, 2, 0).mul(255).round().numpy(), clip["frames"][2])
    np.testing.assert_array_equal(sample["frames"][0].permute(1, 2, 0).mul(255).round().numpy(), clip["frames"][1])
    np.testing.assert_array_equal(sample["label"].numpy(), clip["labels"][2])
    np.testing.assert_array_equal(sample["edge"].numpy(), edge_label(clip["labels"][2], 255, (5, 11, 12)))
    np.testing.assert_allclose(sample["flow"].numpy(), clip["flow_bwd"][2], atol=1e-3)
    np.testing.assert_allclose(ds[2]["flow"].numpy(), clip["flow_fwd"][2], atol=1e-3)  # offset +1
    assert calls and ds[1]["frames"].shape == sample["frames"].shape
    first = calls[0]
    ds[1]
    assert calls[-1] == first  # the augmentation draw depends on (seed, epoch, index) only
    ds.set_epoch(1)
    ds[1]
    assert calls[-1] != first
    batch = torch.utils.data.default_collate([ds[i] for i in range(4)])  # mixed offsets collate
    assert batch["frames"].shape == (4, 2, 3, H, W) and batch["flow"].shape == (4, 2, H, W)
    no_flow = SyntheticVideoDataset("train", "train", num_clips=1, clip_len=8, height=H, width=W, offsets=(-1,))
    assert "flow" not in no_flow[0]  # the default: no flow
    with pytest.raises(ValueError):
        SyntheticVideoDataset("train", "train", num_clips=1, clip_len=5, height=H, width=W)


def test_eval_windows_and_camvid_classes():
    ds = SyntheticVideoDataset("val", "eval", num_clips=2, clip_len=7, height=H, width=W, num_classes=11,
                               window=4, seed=1)
    assert len(ds) == 2 and ds.ignore_index == 11 and ds.num_classes == 11
    s = ds[1]
    assert s["frames"].shape == (4, 3, H, W) and s["labels"].shape == (4, H, W) and s["flows"].shape == (3, 2, H, W)
    assert s["gaps"] == [1, 1, 1] and torch.equal(s["label"], s["labels"][-1])
    clip = render_clip(clip_seed("val", 1, 1), 7, H, W, 11)
    np.testing.assert_array_equal(s["labels"].numpy(), clip["labels"][3:])
    np.testing.assert_array_equal(s["flows"].numpy(), clip["flow_bwd"][4:])
    assert s["labels"].max() <= 10
    with pytest.raises(ValueError):
        SyntheticVideoDataset("val", "eval", num_clips=1, clip_len=3, height=H, width=W, window=4)
