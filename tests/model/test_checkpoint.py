"""Loading released and project checkpoints, and converting between the layouts."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from model import CSRNet, CheckpointError, build_evss, clean_to_released, load_checkpoint, released_to_clean

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def released(make_weights):
    return make_weights.make_state_dict("camvid", 3)


def _keys(reference_dir, name):
    return json.loads((reference_dir / name).read_text())


def _assert_loaded(net, clean):
    own = net.state_dict()
    for key, value in clean.items():
        assert torch.equal(own[key], value), key


def test_released_full_checkpoint_loads_with_and_without_module_prefix(released, tmp_path):
    clean = released_to_clean(released)
    for state in (released, {k.replace("module.", "", 1): v for k, v in released.items()}):
        path = tmp_path / "evss.pth"
        torch.save(state, path)
        net = build_evss(11)
        assert load_checkpoint(net, path) == ""
        _assert_loaded(net, clean)


def test_clean_layout_has_no_aliases_and_matches_the_model(released, reference_dir):
    clean = released_to_clean(released)
    net = build_evss(11)
    assert list(clean) == list(net.state_dict())
    listing = _keys(reference_dir, "evss_camvid_keys.json")
    assert len(listing) == 985 and len(clean) == 985 - 380 - 2


def test_conversion_back_reproduces_the_released_layout(released, reference_dir, make_weights):
    for layout, listing, expected in (
        ("full", "evss_camvid_keys.json", released),
        ("csrnet", "camvid_csrnet_keys.json", make_weights.csrnet_state_dict("camvid", full=released)),
        ("flownet", "pretrained_flownet_keys.json", make_weights.flownet_state_dict(full=released)),
    ):
        back = clean_to_released(released_to_clean(released), layout)
        keys = _keys(reference_dir, listing)
        assert list(back) == list(keys), layout
        for key, meta in keys.items():
            assert list(back[key].shape) == meta["shape"] and str(back[key].dtype) == "torch." + meta["dtype"]
            assert torch.equal(back[key], expected[key]), key


@pytest.mark.slow
def test_partial_checkpoints_go_to_their_part(make_weights):
    net = build_evss(19)
    flow_before = {k: v.clone() for k, v in net.flownet.state_dict().items()}
    csr = make_weights.csrnet_state_dict("citys", 1)
    assert load_checkpoint(net, csr) == "csrnet"
    _assert_loaded(net.csrnet, released_to_clean(csr))
    assert all(torch.equal(v, net.flownet.state_dict()[k]) for k, v in flow_before.items())
    flow = make_weights.flownet_state_dict("citys", 1)
    assert load_checkpoint(net, flow) == "flownet"
    _assert_loaded(net.flownet, flow)
    standalone = CSRNet(19)
    assert load_checkpoint(standalone, csr) == ""
    _assert_loaded(standalone, released_to_clean(csr))


@pytest.mark.slow
def test_project_checkpoint_and_compiled_prefix(make_weights):
    clean = released_to_clean(make_weights.make_state_dict("citys", 2))
    net = build_evss(19)
    load_checkpoint(net, {"model": {"_orig_mod." + k: v for k, v in clean.items()}, "epoch": 3})
    _assert_loaded(net, clean)


def test_mismatch_lists_missing_unexpected_and_shapes(make_weights):
    state = make_weights.make_state_dict("citys", 0)  # 19 classes into an 11-class net
    state.pop("module.flownet.conv1.0.bias")
    state["module.conet.extra.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(build_evss(11), state)
    message = str(err.value)
    assert "missing (1): flownet.conv1.0.bias" in message
    assert "unexpected (1): conet.extra.weight" in message
    assert "csrnet.logits.conv.weight: checkpoint (19, 128, 1, 1) vs model (11, 128, 1, 1)" in message


def test_ambiguous_aliases_and_bad_files_are_clear_errors(make_weights, tmp_path):
    state = make_weights.make_state_dict("citys", 0)
    state["module.resnet.conv1.weight"] = state["module.resnet.conv1.weight"] + 1
    with pytest.raises(CheckpointError, match="differ from their 'csrnet.backbone"):
        load_checkpoint(build_evss(19), state)
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        load_checkpoint(build_evss(19), tmp_path / "nope.pth")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.pth"):
        load_checkpoint(build_evss(19), junk)


@pytest.mark.slow
def test_converter_cli_round_trip(released, tmp_path):
    src, clean, back = tmp_path / "released.pth", tmp_path / "clean.pth", tmp_path / "back.pth"
    torch.save(released, src)
    run = [sys.executable, "-m", "tools.convert_checkpoint"]
    subprocess.run(run + [str(src), str(clean)], cwd=ROOT, check=True, capture_output=True)
    subprocess.run(run + [str(clean), str(back), "--to", "released"], cwd=ROOT, check=True, capture_output=True)
    restored = torch.load(back, weights_only=True)
    assert list(restored) == list(released)
    assert all(torch.equal(restored[k], v) for k, v in released.items())
