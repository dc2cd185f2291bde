"""The evaluation protocol (engine/evaluate.py): windows against segment_clip, the results schema, the
temporal measures of streaming and the chaining of consecutive windows."""
from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch

from engine.evaluate import WindowEvaluator, evaluate_distances, parse_distances, shard_indices
from engine.predictors import KeyframeStream
from model import build_evss
from model.blocks import upsample4
from model.fusion import crop


@pytest.fixture(scope="module")
def tiny_net():
    torch.manual_seed(0)
    return build_evss(11).eval()


def _frames(seed: int, t: int = 10, h: int = 32, w: int = 48) -> torch.Tensor:
    # smooth moving pattern so flows and predictions are not pure noise
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(1, 3, h // 4, w // 4 + 4, generator=g)
    base = torch.nn.functional.interpolate(base, size=(h, w + 16), mode="bilinear", align_corners=False)[0]
    return torch.stack([base[:, :, i:i + w] for i in range(t)]).contiguous()


class _Windows(torch.utils.data.Dataset):
    """Windows of one sliding clip (window i = frames i..i+T-1), optionally exposing paths."""

    num_classes = 11
    ignore_index = 11

    def __init__(self, clip: torch.Tensor, labels: torch.Tensor, length: int = 10, with_items: bool = True,
                 dense_labels: bool = False) -> None:
        self.clip, self.labels, self.length = clip, labels, length
        self.dense_labels = dense_labels
        n = clip.shape[0] - length + 1
        if with_items:
            self.items = [SimpleNamespace(frames=tuple(f"f{j}" for j in range(i, i + length))) for i in range(n)]
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        sample = {"frames": self.clip[i:i + self.length], "label": self.labels[i + self.length - 1],
                  "id": f"w{i}", "gaps": [1] * (self.length - 1)}
        if self.dense_labels:
            sample["labels"] = self.labels[i:i + self.length]
        return sample


def test_parse_distances_and_shards():
    assert parse_distances("1,3") == [1, 3]
    assert parse_distances("1-9") == list(range(1, 10))
    assert parse_distances("original") == [3, 5, 7, 9]
    assert parse_distances([5, 1, 5]) == [1, 5]
    with pytest.raises(ValueError):
        parse_distances("-1")
    for n, world in ((0, 2), (7, 3), (10, 4), (3, 5)):
        seen = [i for r in range(world) for i in shard_indices(n, r, world)]
        assert seen == list(range(n))  # contiguous shards, every index exactly once


@pytest.mark.slow
def test_window_matches_segment_clip(tiny_net):
    frames = _frames(0)
    window = WindowEvaluator(tiny_net, frames)
    with torch.no_grad():
        for d in (1, 4, 9):
            got = window.distance(d)
            ref = tiny_net.segment_clip([frames[j:j + 1] for j in range(9 - d, 10)])
            assert torch.equal(got["pred"], ref["pred"][0]), d
            plain = crop(upsample4(ref["warped"][-1]), (32, 48)).argmax(1)[0]
            assert torch.equal(got["pred_warp"], plain), d
        key = tiny_net.segment_clip([frames[9:10]])["pred"][0]
        assert torch.equal(window.distance(0)["pred"], key)
        assert torch.equal(window.keyframe_pred(), key)
    # flows were computed once per consecutive pair, CSRNet once per keyframe position
    assert sorted(window._flow) == list(range(1, 10))
    assert sorted(window._key) == [0, 5, 8, 9]
    with pytest.raises(ValueError):
        window.distance(10)


def test_streams_over_a_window_equal_streams_over_the_net(tiny_net):
    clip = _frames(3, t=5)
    window = WindowEvaluator(tiny_net, clip[:4])
    cached, plain = KeyframeStream(window, 3), KeyframeStream(tiny_net, 3)
    for t in range(4):
        assert torch.equal(cached.step(window.frame(t)), plain.step(clip[t:t + 1])), t
    assert sorted(window._key) == [0, 3] and sorted(window._flow) == [1, 2]
    # the next window, shifted by one frame: the stream goes on, its previous frame found by value
    window.load(clip[1:])
    assert torch.equal(cached.step(window.frame(3)), plain.step(clip[4:5]))
    assert sorted(window._flow) == [3] and not window._key
    # a frame that is not the window's is computed, not looked up
    other = clip[4:5].clone()
    assert torch.equal(window.keyframe(other), tiny_net.keyframe(other)) and not window._key


@pytest.mark.slow
def test_evaluate_distances_schema_and_temporal(tiny_net):
    clip = _frames(1, t=12)
    with torch.no_grad():  # labels = the keyframe network's own predictions: d = 0 scores 1.0
        labels = torch.stack([tiny_net.segment_clip([clip[t:t + 1]])["pred"][0] for t in range(12)])
    labels[:, :2, :] = 11  # an ignored band
    ds = _Windows(clip, labels, dense_labels=False)
    seen = {}
    res = evaluate_distances(tiny_net, ds, [1, 3], "cpu", progress=False, temporal=True, flow_source="farneback",
                             keyframe_interval=4, vc_n=2, on_prediction=lambda i, k, p: seen.setdefault((i, k), p))
    assert res["num_samples"] == 3
    assert set(res["miou"]) == {"1", "3"} and set(res["miou_warp"]) == {"1", "3"}
    assert res["miou_keyframe"] == pytest.approx(1.0)
    assert all(0.0 <= v <= 1.0 for v in res["miou"].values())
    assert all(len(v) == 11 for v in res["iou_per_class"].values())
    assert all(v is None or 0 <= v <= 1 for v in res["iou_per_class"]["3"])
    assert all(isinstance(x, int) for row in res["confusion"]["3"] for x in row)
    # every labelled pixel (all but the ignored band) of the 3 windows is counted
    assert sum(map(sum, res["confusion"]["1"])) == 3 * (32 - 2) * 48
    json.dumps(res)  # JSON-ready
    assert ("w2", "d3") in seen and ("w0", "warp_d1") in seen and ("w1", "keyframe") in seen
    t = res["temporal"]
    assert t["flow_source"] == "opencv-farneback" and t["keyframe_interval"] == 4
    # the three windows chain into one clip of 12 frames: 11 pairs, each counted once
    assert t["evss"]["num_pairs"] == 11 and t["keyframe"]["num_pairs"] == 11
    # labelled frames 9, 10, 11 are consecutive: VC_2 has windows (9,10) [+ (10,11) dropped as last]
    assert t["keyframe"]["vc_windows"] == 1 and t["keyframe"]["vc"] == pytest.approx(1.0)
    assert t["keyframe"]["miou"] == pytest.approx(1.0)
    for name in ("evss", "keyframe"):
        for key in ("tc_etc", "tc_fb"):
            assert 0.0 <= t[name][key] <= 1.0

    # without frame paths every window is its own clip: 9 pairs per window
    res2 = evaluate_distances(tiny_net, _Windows(clip, labels, with_items=False, dense_labels=True), [1], "cpu",
                              progress=False, temporal=True, flow_source="dis", keyframe_interval=3, fb_check=False,
                              limit=1)
    assert res2["num_samples"] == 1
    assert res2["temporal"]["evss"]["num_pairs"] == 9 and res2["temporal"]["evss"]["tc_fb"] is None
    assert res2["temporal"]["keyframe"]["vc_windows"] == 10 - 8  # VC_8: dense labels on every window frame
