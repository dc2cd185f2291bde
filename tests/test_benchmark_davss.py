"""DAVSS in tools/benchmark.py: its stages and keys at a tiny size, and FLOP counts against hand
computation and the original's sizes (DAVSS.md §11)."""
from __future__ import annotations

import json

import pytest
import torch

from model import build_davss
from tools import benchmark

DAVSS_STAGES = ("key", "key_step", "flownet", "warp", "downsample", "dmnet", "cfnet", "merge", "nonkey")


@pytest.fixture(scope="module")
def runner():
    torch.manual_seed(0)
    return benchmark.DAVSSRunner(build_davss(19, keyframe="csrnet").eval())


def test_davss_and_evss_interleaved_give_every_key(tmp_path):
    out = tmp_path / "bench.json"
    benchmark.main(["--method", "davss,evss", "--variant", "original", "--resolutions", "32x64", "--repeats", "1",
                    "--warmup", "0", "--threads", "1", "--weights", "random", "--ks", "1,5", "--json", str(out)])
    data = json.loads(out.read_text())
    res = data["resolutions"]["32x64"]
    davss, evss = res["davss"], res["original"]
    for stage in DAVSS_STAGES:
        assert davss[f"{stage}_ms"] > 0, stage
    for k in (1, 5):
        assert davss[f"amortised_k{k}_ms"] == pytest.approx((davss["key_step_ms"] + (k - 1) * davss["nonkey_ms"]) / k)
    assert set(davss["gflops"]) == {"key", "flownet", "dmnet", "cfnet", "nonkey"}
    # the non-keyframe step's convolutions are FlowNet's, DMNet's and CFNet's (warp and resizes count 0)
    gf = davss["gflops"]
    assert gf["nonkey"] == pytest.approx(gf["flownet"] + gf["dmnet"] + gf["cfnet"], rel=1e-9)
    peaks = data["conv_peak_gflop_per_s"]  # measured in the run; both networks run in float32
    assert set(peaks) == {"float32", "bfloat16"} and min(peaks.values()) > 0
    for entry in (davss, evss):
        for stage, rate in entry["gflop_per_s"].items():
            assert entry["pct_of_conv_peak"][stage] == pytest.approx(100 * rate / peaks["float32"]), stage
    assert davss["peak_mem_mb"] > 0 and evss["peak_mem_mb"] > 0   # the peak-memory worker builds DAVSS too
    assert "conet_ms" in evss and "dmnet_ms" not in evss
    c = res["compare_methods"]
    assert c["runners"] == ["davss", "original"]
    assert c["ratios"]["nonkey"] == pytest.approx(davss["nonkey_ms"] / evss["nonkey_ms"])
    assert set(c["amortised_ratios"]) == {"k1", "k5"}
    assert data["32x64"]["nonkey_ms"] == davss["nonkey_ms"]        # the flat keys are the first runner's
    assert data["methods"] == ["davss", "evss"] and data["davss_keyframe"] == "csrnet"


def test_compare_rejects_davss():
    with pytest.raises(SystemExit):
        benchmark.main(["--method", "davss", "--compare", "original", "exact"])


def test_dmnet_gflops_equal_the_hand_count(runner):
    frames = benchmark.make_frames(1, 64, 128, torch.device("cpu"))
    gflops = benchmark.count_gflops(runner, frames)
    # per 1/4-grid pixel and pass, multiply-adds of depthwise 3×3 + pointwise 1×1 per unit (3→4, 4→8,
    # 8→16) and conv4 (16→16); two passes (warped and current image), 2 FLOPs each, 16×32 pixels
    macs = (3 * 9 + 3 * 4) + (4 * 9 + 4 * 8) + (8 * 9 + 8 * 16) + 16 * 16
    assert macs == 563
    assert gflops["dmnet"] * 1e9 == pytest.approx(2 * 2 * macs * 16 * 32, rel=1e-12)
    assert 2 * 2 * macs * 256 * 512 / 1e9 == pytest.approx(0.30, abs=0.005)   # DAVSS.md §11 at 1024×2048


def test_flownet_and_cfnet_gflops_scale_to_the_original(runner):
    """At a size divisible by 64 every layer's output scales with the area: 128×256 × 64 = 1024×2048,
    whose counts DAVSS.md §11 gives (FlowNet 52.45, CFNet 62.99 GFLOPs)."""
    frames = benchmark.make_frames(1, 128, 256, torch.device("cpu"))
    gflops = benchmark.count_gflops(runner, frames)
    assert 64 * gflops["flownet"] == pytest.approx(52.45, abs=0.005)
    assert 64 * gflops["cfnet"] == pytest.approx(62.99, abs=0.005)
