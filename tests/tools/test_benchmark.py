"""tools/benchmark.py: the command line, its JSON keys, its refusals and its one-line errors."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from model import build_evss
from model.errors import run_cli
from tools import benchmark

ROOT = Path(__file__).resolve().parents[2]
DAVSS_STAGES = ("key", "key_step", "flownet", "warp", "downsample", "dmnet", "cfnet", "merge", "nonkey")
TINY = ["--resolutions", "32x64", "--repeats", "1", "--warmup", "0", "--threads", "1"]


@pytest.mark.slow
def test_benchmark_cli_smoke(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, "-m", "tools.benchmark", "--resolutions", "64x128", "--repeats", "1",
                           "--compare", "original", "exact", "--baseline", "lraspp", "--weights", "random",
                           "--no-flops", "--warmup", "0", "--json", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads(out.read_text())
    entry = data["64x128"]
    for key in ("key_ms", "nonkey_ms", "flownet_ms", "conet_ms", "fusion_ms", "warp_ms", "peak_mem_mb",
                "amortised_k10_ms", "lraspp_fp32_ms"):
        assert key in entry, key
    assert "environment" in data and data["threads"] >= 1
    compare = data["resolutions"]["64x128"]["compare"]
    for stage, (lo, hi) in compare["ratio_ranges"].items():  # one repeat: the single pair's ratio
        assert lo == hi == pytest.approx(compare["ratios"][stage]), stage
    assert set(data["resolutions"]["64x128"]["exact"]["faults"]) >= {"key", "nonkey", "fusion"}
    assert "time ratios" in proc.stdout


@pytest.mark.slow
def test_davss_and_evss_interleaved_give_every_key(tmp_path):
    out = tmp_path / "bench.json"
    benchmark.main(["--method", "davss,evss", "--variant", "original", *TINY, "--weights", "random", "--ks", "1,5",
                    "--json", str(out)])
    data = json.loads(out.read_text())
    res = data["resolutions"]["32x64"]
    davss, evss = res["davss"], res["original"]
    for stage in DAVSS_STAGES:
        assert davss[f"{stage}_ms"] > 0, stage
    for k in (1, 5):
        assert davss[f"amortised_k{k}_ms"] == pytest.approx((davss["key_step_ms"] + (k - 1) * davss["nonkey_ms"]) / k)
    assert set(davss["gflops"]) == {"key", "flownet", "dmnet", "cfnet", "nonkey"}
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


def test_variant_names_are_checked_by_the_parser(capsys):
    with pytest.raises(SystemExit):
        benchmark.main(["--variant", "fast@1"])
    assert "the scale after @ must be a number in (0, 1)" in capsys.readouterr().err


def test_reference_weights_without_the_generator_are_one_line(monkeypatch, capsys):
    monkeypatch.delenv("EVSS_MAKE_WEIGHTS", raising=False)
    with pytest.raises(SystemExit) as info:
        run_cli(benchmark.main, [*TINY, "--weights", "citys", "--no-memory", "--no-flops"])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --weights citys needs the reference weight generator") and "\n" not in err


@pytest.mark.slow
def test_reference_weights_and_timing_are_recorded(tmp_path, reference_dir, monkeypatch):
    monkeypatch.setenv("EVSS_MAKE_WEIGHTS", str(reference_dir / "make_weights.py"))  # the default of --make-weights
    timing = reference_dir / "original_cpu_timing.json"
    out = tmp_path / "bench.json"
    assert benchmark.main([*TINY, "--variant", "original", "--no-memory", "--no-flops",
                           "--reference-timing", str(timing), "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["weights"] == "citys" and data["reference"] == str(timing)  # citys: the default with a generator


@pytest.mark.slow
def test_benchmark_fast_accuracy_cli(tmp_path):
    torch.manual_seed(0)
    weights = tmp_path / "evss.pth"
    torch.save(build_evss(19).eval().state_dict(), weights)
    out = tmp_path / "acc.json"
    kwargs = json.dumps({"num_clips": 1, "clip_len": 4, "height": 32, "width": 64, "window": 4})
    cmd = [sys.executable, "-m", "tools.benchmark", "--fast-accuracy", "--weights", str(weights), "--synthetic-kwargs",
           kwargs, "--accuracy-distance", "2", "--json", str(out)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(out.read_text())["fast_accuracy"]
    assert res["windows"] == 1 and res["distance"] == 2
    assert res["miou_change_points"] == pytest.approx(res["miou_fast"] - res["miou_exact"])
    assert 0 <= res["agreement_miou_fast_vs_exact"] <= 100
    refused = subprocess.run(cmd[:5] + ["no-such.pth"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert refused.returncode != 0 and "needs a trained EVSS checkpoint" in refused.stderr
