"""DAVSS beyond the goldens: training samples, the CFNet loss forms, the evaluation protocol,
the distortion-map measure and a few training iterations of both stages (tiny synthetic data)."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from dataset.synthetic import SyntheticVideoDataset
from dataset.transforms import train_transform
from dataset.triplets import TripletDataset
from engine.distortion import DistortionQuality, evaluate_distortion
from engine.evaluate import WindowEvaluator
from engine.stages import train
from engine.schedules import HalfStepFactor
from model import build_davss
from model.checkpoint import read_state_dict


def _pairs(max_distance=10, clip_len=12):
    return SyntheticVideoDataset("train", "train", num_clips=1, clip_len=clip_len, height=32, width=48,
                                 offsets=tuple(range(-max_distance, 0)))


def test_triplets_follow_the_original_structure():
    pairs = _pairs()
    triplets = TripletDataset(pairs, max_distance=10, seed=3)
    assert len(triplets) == 2 * 9  # labelled frames t = 10, 11 (the others lack neighbours), j = 2..10
    data = pairs._clip(0)["frames"]
    for i in range(len(triplets)):
        sample = triplets[i]
        j, k = (-o for o in sample["offsets"])
        assert 1 <= k < j <= 10
        t = int(sample["id"].rsplit("_", 1)[1])
        expected = torch.from_numpy(data[[t - j, t - k, t]]).permute(0, 3, 1, 2).float() / 255
        assert torch.equal(sample["frames"], expected)
        assert sample["frames"].shape == (3, 3, 32, 48) and sample["label"].shape == (32, 48)
    assert [s[2:] for s in triplets.items] == [s[2:] for s in TripletDataset(pairs, 10, seed=3).items]
    flipped = TripletDataset(pairs, 10, train_transform((24, 40), 255, None, 1.0), seed=3)[0]
    plain = triplets[0]
    assert flipped["frames"].shape == (3, 3, 24, 40)  # one crop window for all three frames and the label
    assert any(torch.equal(flipped["frames"], plain["frames"].flip(-1)[..., y:y + 24, x:x + 40])
               and torch.equal(flipped["label"], plain["label"].flip(-1)[y:y + 24, x:x + 40])
               for y in range(9) for x in range(9))
    with pytest.raises(ValueError, match="neighbours"):
        TripletDataset(_pairs(max_distance=3, clip_len=12), max_distance=4)


def test_cfnet_loss_broadcast_and_per_sample_forms():
    """The original pairs every sample's per-pixel loss with every sample's map (N×N); per sample
    is the default. Both checked against explicit loops."""
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 5, 4, 6, generator=gen)
    target = torch.randint(0, 5, (3, 4, 6), generator=gen)
    target[0, 0, :3] = 255
    dm = torch.rand(3, 1, 4, 6, generator=gen)
    ce = torch.zeros(3, 4, 6)
    for n in range(3):
        for y in range(4):
            for x in range(6):
                if target[n, y, x] != 255:
                    ce[n, y, x] = -F.log_softmax(logits[n, :, y, x], 0)[target[n, y, x]]
    per_sample = sum((ce[a] * dm[a, 0]).mean() for a in range(3)) / 3
    broadcast = sum((ce[b] * dm[a, 0]).mean() for a in range(3) for b in range(3)) / 9
    net = build_davss(5, keyframe="csrnet")
    assert math.isclose(net._cfnet_loss(logits, target, dm).item(), per_sample.item(), rel_tol=1e-6)
    net.cfnet_loss_broadcast = True
    assert math.isclose(net._cfnet_loss(logits, target, dm).item(), broadcast.item(), rel_tol=1e-6)


@pytest.fixture(scope="module")
def small_net():
    torch.manual_seed(0)
    return build_davss(7, keyframe="csrnet").eval()


@pytest.mark.slow
def test_evaluation_protocol_equals_segment_clip(small_net):
    frames = torch.rand(6, 3, 40, 56, generator=torch.Generator().manual_seed(1))
    window = WindowEvaluator(small_net, frames)
    for d in (1, 3, 5):
        out = window.distance(d)
        clip = small_net.segment_clip([f[None] for f in frames[5 - d:]])
        assert torch.equal(out["pred"], clip["pred"][0])
        assert torch.equal(out["pred_warp"], small_net.upsample(clip["warped"][-1]).argmax(1)[0])
        assert torch.equal(out["rectified"]["dm_up"], clip["dm_up"])
    assert torch.equal(window.distance(0)["pred"], small_net.segment_clip([frames[5:]])["pred"][0])


def test_distortion_quality_by_hand():
    q = DistortionQuality(0.5)
    dm = torch.tensor([[0.9, 0.6, 0.2], [0.5, 0.1, 0.0]])
    truth = torch.tensor([[True, False, True], [True, False, False]])
    q.update(dm, truth)
    r = q.compute()
    # predicted = [[1,1,0],[1,0,0]] → TP 2 (0,0),(1,0); FP 1 (0,1); FN 1 (0,2); TN 2
    assert (r["precision"], r["recall"], r["iou"]) == (2 / 3, 2 / 3, 2 / 4)
    assert math.isclose(r["l1"], (0.1 + 0.6 + 0.8 + 0.5 + 0.1 + 0.0) / 6, rel_tol=1e-6)  # float32 maps
    assert r["mismatch_rate"] == 0.5 and r["predicted_rate"] == 0.5
    assert DistortionQuality().compute()["iou"] is None
    # thresholds 0.9: TP 1, FP 0 | 0.6: TP 1, FP 1 | 0.5: TP 2, FP 1 | 0.2: TP 3, FP 1 | ...
    assert math.isclose(r["ap"], 1 * (1 / 3) + 2 / 3 * (1 / 3) + 3 / 4 * (1 / 3))
    assert math.isclose(r["best_iou"], 3 / 4) and r["best_threshold"] == 0.2


def test_distortion_evaluation_scores_the_nets_own_mismatch(small_net):
    frames = torch.rand(4, 3, 32, 40, generator=torch.Generator().manual_seed(2))
    res = evaluate_distortion({"davss": small_net}, [{"frames": frames}], [1, 3], progress=False)["davss"]
    window = WindowEvaluator(small_net, frames)
    for d in (1, 3):
        out = window.distance(d)
        q = DistortionQuality()
        q.update(out["rectified"]["dm_up"][0, 0], out["pred_warp"] != window.keyframe_pred())
        assert res[d] == q.compute()


def test_step_schedule():
    f = HalfStepFactor(10)
    assert [f(s) for s in (0, 5, 6, 10, 20)] == [1.0, 1.0, 0.1, 0.1, 0.1]


@pytest.mark.slow
def test_both_training_stages_run_a_few_iterations(tmp_path):

    tiny = ["data.synthetic.train_clips=1", "data.synthetic.val_clips=1", "data.synthetic.clip_len=11",
            "data.synthetic.height=32", "data.synthetic.width=48", "data.val_limit=1", "data.flip=0.5",
            "model.keyframe_checkpoint=null", "model.flownet=null", "model.allow_random_keyframe=true",
            "train.iters=2", "train.batch_size=2", "train.eval_every_iters=null", "train.ckpt_every_iters=null",
            "train.progress=false", "train.tb_images=1", "eval.distances=[1,9]", "threads=1"]
    first = train("davss_dmnet", "configs/synthetic_davss_dmnet.yaml", tiny + [f"out_dir={tmp_path / 'dm'}"])
    assert first["iteration"] == 2 and math.isfinite(first["metrics"]["l1_d9"])
    second = train("davss", "configs/synthetic_davss.yaml",
                       tiny + [f"out_dir={tmp_path / 'c'}", f"model.dmnet={tmp_path / 'dm' / 'final.pth'}"])
    assert second["iteration"] == 2 and set(second["metrics"]) >= {"miou_d1", "miou_d9", "miou_warp_d9"}
    dm_state = read_state_dict(tmp_path / "dm" / "final.pth")
    final = read_state_dict(tmp_path / "c" / "final.pth")
    assert final.keys() == dm_state.keys()
    # both runs start from the same seeded random weights: stage 2 keeps stage 1's DMNet and the
    # frozen keyframe network, and trains FlowNet and CFNet
    for key in final:
        if key.startswith(("dmnet.", "csrnet.")):
            assert torch.equal(final[key], dm_state[key]), key
    for part in ("flownet.", "cfnet."):
        assert any(not torch.equal(final[k], dm_state[k]) for k in final if k.startswith(part)), part
