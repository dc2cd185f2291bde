"""engine.benchmark for DAVSS: its stage functions drive the stream, and FLOP counts against hand
computation and the sizes the original DAVSS paper's code gives at 1024×2048."""
from __future__ import annotations

import pytest
import torch

from engine.benchmark.flops import count_gflops
from engine.benchmark.inputs import make_frames
from engine.benchmark.stages import DAVSSRunner
from model import build_davss

DAVSS_STAGES = ("key", "key_step", "flownet", "warp", "downsample", "dmnet", "cfnet", "merge", "nonkey")


@pytest.fixture(scope="module")
def runner():
    torch.manual_seed(0)
    return DAVSSRunner(build_davss(19, keyframe="csrnet").eval())


def test_stages_and_the_streams_step(runner):
    frames = make_frames(1, 32, 64, torch.device("cpu"))
    fns = runner.stage_functions(frames)
    assert tuple(fns) == DAVSS_STAGES
    stream = runner.model.stream()
    with torch.no_grad():
        stream.step(frames[0], keyframe=True)
        expected = stream.step(frames[1])
        fns["key_step"]()
        out = fns["nonkey"]()
        assert torch.equal(out["logits"], expected["logits"])
        assert torch.equal(fns["merge"](), out["pred"])  # the merge stage ends in the step's prediction


@pytest.mark.slow
def test_nonkey_gflops_are_its_parts(runner):
    gf = count_gflops(runner, make_frames(1, 32, 64, torch.device("cpu")))
    assert set(gf) == {"key", "flownet", "dmnet", "cfnet", "nonkey"}
    # the non-keyframe step's convolutions are FlowNet's, DMNet's and CFNet's (warp and resizes count 0)
    assert gf["nonkey"] == pytest.approx(gf["flownet"] + gf["dmnet"] + gf["cfnet"], rel=1e-9)


@pytest.mark.slow
def test_dmnet_gflops_equal_the_hand_count(runner):
    frames = make_frames(1, 64, 128, torch.device("cpu"))
    gflops = count_gflops(runner, frames)
    # per 1/4-grid pixel and pass, multiply-adds of depthwise 3×3 + pointwise 1×1 per unit (3→4, 4→8,
    # 8→16) and conv4 (16→16); two passes (warped and current image), 2 FLOPs each, 16×32 pixels
    macs = (3 * 9 + 3 * 4) + (4 * 9 + 4 * 8) + (8 * 9 + 8 * 16) + 16 * 16
    assert macs == 563
    assert gflops["dmnet"] * 1e9 == pytest.approx(2 * 2 * macs * 16 * 32, rel=1e-12)
    assert 2 * 2 * macs * 256 * 512 / 1e9 == pytest.approx(0.30, abs=0.005)   # the original's count at 1024×2048


@pytest.mark.slow
def test_flownet_and_cfnet_gflops_scale_to_the_original(runner):
    """At a size divisible by 64 every layer's output scales with the area: 128×256 × 64 = 1024×2048,
    where the original DAVSS code's layers count FlowNet 52.45 and CFNet 62.99 GFLOPs."""
    frames = make_frames(1, 128, 256, torch.device("cpu"))
    gflops = count_gflops(runner, frames)
    assert 64 * gflops["flownet"] == pytest.approx(52.45, abs=0.005)
    assert 64 * gflops["cfnet"] == pytest.approx(62.99, abs=0.005)
