"""Behaviour of the EVSS network beyond the goldens: fixed defects, devices, sizes, streaming."""
from __future__ import annotations

import logging

import pytest
import torch

from model import CSRNet, build_evss
from model.blocks import PooledBatchNorm2d
from model.losses import edge_loss, edge_semantic_loss


def _frames(n, size=(64, 96), seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [torch.rand(1, 3, *size, generator=gen) for _ in range(n)]


def test_construction_downloads_nothing(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a download was attempted")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    build_evss(19)


def test_pretrained_backbone_without_cache_says_so(monkeypatch, tmp_path, caplog):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with caplog.at_level(logging.WARNING):
        CSRNet(19, pretrained_backbone=True)
    assert "ImageNet ResNet-18 weights are not in" in caplog.text


def test_pretrained_backbone_loads_from_cache(monkeypatch, tmp_path):
    import torchvision

    reference = torchvision.models.resnet18()
    (tmp_path / "checkpoints").mkdir()
    torch.save(reference.state_dict(), tmp_path / "checkpoints" / "resnet18-f37072fd.pth")
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    net = CSRNet(19, pretrained_backbone=True)
    assert torch.equal(net.backbone.layer3[1].conv2.weight, reference.layer3[1].conv2.weight)


@pytest.mark.slow
@pytest.mark.parametrize("size", [(64, 96), (61, 90)])
def test_training_step_batch_one_and_odd_sizes(size):
    """The original crashes with a batch of one (pooled BatchNorm) and on sizes not divisible by 4."""
    net = build_evss(11, ignore_index=11).train()
    frames = torch.stack(_frames(2, size), 1)
    edge = (torch.rand(1, *size) > 0.8).long()
    out = net(frames, edge)
    assert out["pseudo_label"].shape == (1, *size)
    assert torch.isfinite(out["loss"])
    out["loss"].backward()
    assert all(p.grad is None for p in net.csrnet.parameters())
    assert net.conet.conv1[0].weight.grad.abs().sum() > 0
    assert net.flownet.conv1[0].weight.grad.abs().sum() > 0


def test_pooled_batchnorm_uses_running_stats_for_single_values():
    bn = PooledBatchNorm2d(4).train()
    bn.running_mean.fill_(1.0)
    bn.running_var.fill_(4.0)
    x = torch.full((1, 4, 1, 1), 3.0)
    assert torch.allclose(bn(x), torch.full_like(x, 1.0), atol=1e-4)
    assert torch.equal(bn.running_mean, torch.ones(4))  # untouched
    y = torch.randn(2, 4, 1, 1)
    assert torch.allclose(bn(y), torch.nn.functional.batch_norm(y, None, None, training=True), atol=1e-5)


def test_stage2_keeps_keyframe_network_frozen_in_eval_mode():
    net = build_evss(19).train()
    assert not net.csrnet.training and net.conet.training and net.flownet.training
    net.freeze_keyframe = False
    net.train()
    assert net.csrnet.training and all(p.requires_grad for p in net.csrnet.parameters())


@pytest.mark.slow
def test_keyframe_only_clip_is_the_keyframe_segmentation():
    net = build_evss(11).eval()
    (frame,) = _frames(1)
    out = net.segment_clip([frame])
    logits_q = net.csrnet(frame)
    expected = torch.nn.functional.interpolate(logits_q, scale_factor=4, mode="bilinear", align_corners=False)
    assert torch.equal(out["logits"], expected)
    assert torch.equal(out["pred"], expected.argmax(1))


def test_batched_clip_equals_per_sample():
    net = build_evss(11).eval()
    a, b = _frames(3, seed=1), _frames(3, seed=2)
    batched = net.segment_clip([torch.cat([x, y]) for x, y in zip(a, b)])
    for i, clip in enumerate((a, b)):
        single = net.segment_clip(clip)
        assert torch.allclose(batched["logits"][i], single["logits"][0], atol=1e-4)


@pytest.mark.slow
def test_stream_rejects_a_frame_of_another_size():
    net = build_evss(11).eval()
    stream = net.stream()
    stream.step(_frames(1)[0], keyframe=True)
    with pytest.raises(ValueError, match="same size"):
        stream.step(_frames(1, size=(32, 32))[0])


def test_meta_device_shapes():
    """Device follows the inputs: the whole inference path runs on the meta device."""
    net = build_evss(19).eval().to("meta")
    frames = [torch.empty(1, 3, 64, 128, device="meta") for _ in range(3)]
    out = net.segment_clip(frames)
    assert out["logits"].device.type == "meta" and out["logits"].shape == (1, 19, 64, 128)


def test_edge_losses_hand_computed():
    # Two pixels: a non-edge (label 0) and an edge (label 1); weights [n1, n0]/(n0+n1) = [1/2, 1/2].
    logits = torch.tensor([[[[2.0, 0.0]], [[0.0, 1.0]]]])  # B=1, C=2, H=1, W=2
    label = torch.tensor([[[0, 1]]])
    nll = -torch.log_softmax(logits, 1)
    expected = (nll[0, 0, 0, 0] + nll[0, 1, 0, 1]) / 2
    assert torch.allclose(edge_loss(logits, label), expected)
    # A degenerate batch (no edge pixel) gives 0, not NaN.
    assert edge_loss(logits, torch.zeros_like(label)).item() == 0.0
    # Edge-semantic: only predicted-edge pixels with a non-zero pseudo-label count.
    update = torch.tensor([[[[0.0, 0.0]], [[0.0, 3.0]], [[1.0, 0.0]]]])
    pseudo = torch.tensor([[[2, 1]]])
    loss = edge_semantic_loss(update, logits, pseudo)  # argmax(edge) = [0, 1]: only pixel 1 (class 1)
    assert torch.allclose(loss, -torch.log_softmax(update[0, :, 0, 1], 0)[1])
    assert edge_semantic_loss(update, logits, torch.zeros_like(pseudo)).item() == 0.0
