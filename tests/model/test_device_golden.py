"""The golden case of the original code (256×512 Cityscapes weights, keyframe then three propagated
frames) streamed on each device: every product within test_golden's tolerances of the reference
outputs, and the class identical wherever the reference's margin exceeds 2e-4, for the full stream and
for the prediction-only one (the fused merge-argmax).  CUDA runs in full float32 (no TF32)."""
from __future__ import annotations

import copy

import pytest
import torch

from model import build_evss, load_checkpoint
from tests.devices import DEVICES, full_fp32
from tests.model.test_golden import _close, _logit_tol


@pytest.fixture(scope="module")
def golden(reference_dir) -> dict:
    return torch.load(reference_dir / "golden_citys_256x512.pt", weights_only=True)


@pytest.fixture(scope="module")
def citys_net(make_weights):
    net = build_evss(19).eval()
    load_checkpoint(net, make_weights.make_state_dict("citys", 0))
    return net


def _assert_decided_pixels_agree(name, pred, golden):
    decided = golden["d3.margin"] > 2e-4
    wrong = (pred.cpu() != golden["d3.pred"].long()) & decided
    assert wrong.sum() == 0, f"{name}: {int(wrong.sum())} pixels with margin > 2e-4 change class"


@pytest.mark.slow
@pytest.mark.parametrize("device", DEVICES)
def test_stream_matches_golden(citys_net, golden, device):
    net = copy.deepcopy(citys_net).to(device)
    frames = (golden["frames_u8"].float() / 255).to(device)
    with full_fp32():
        stream, pred_only = net.stream(golden["wf"]), net.stream(golden["wf"], pred_only=True)
        steps = [stream.step(frames[i:i + 1], keyframe=(i == 0)) for i in range(4)]
        preds = [pred_only.step(frames[i:i + 1], keyframe=(i == 0))["pred"] for i in range(4)]
    g = golden
    steps = [{k: v.cpu() if isinstance(v, torch.Tensor) else v for k, v in s.items()} for s in steps]
    last = steps[-1]
    _close("key_logits", steps[0]["key_logits"], g["d3.key_logits"], _logit_tol(g["d3.key_logits"]))
    _close("flows", torch.stack([s["flow"] for s in steps[1:]]), g["d3.flows"], 1e-4)
    _close("warped", torch.stack([s["warped"] for s in steps[1:]]), g["d3.warped"], _logit_tol(g["d3.warped"]))
    _close("dm_coarse", last["dm_coarse"], g["d3.dm_coarse_lowres"], 0)
    _close("edge", last["edge"], g["d3.edge_lowres"], _logit_tol(g["d3.edge_lowres"]))
    _close("update", last["update"], g["d3.feat_update_lowres"], _logit_tol(g["d3.feat_update_lowres"]))
    _close("dm_fine", last["dm_fine"], g["d3.dm_fine"], 1e-4)
    _close("merged", last["logits"], g["d3.merged_logits"], 1e-4)
    assert preds[-1].device.type == device
    _assert_decided_pixels_agree("stream", last["pred"], g)
    _assert_decided_pixels_agree("prediction-only stream", preds[-1], g)
