"""engine.benchmark for EVSS: the stage functions drive the public stream, variant names, runner
precision, loading the reference weights, paired ratios and page-fault counting."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from engine.benchmark.accuracy import output_difference
from engine.benchmark.inputs import make_frames
from engine.benchmark.stages import EVSSRunner
from engine.benchmark.timing import paired_ratio_range
from engine.benchmark.variants import VARIANT_OPTIONS, BenchmarkError, load_evss, variant_options
from model import build_evss, load_checkpoint

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return build_evss(19).eval()


@pytest.fixture(scope="module")
def runners(net):
    return {name: EVSSRunner(name, net) for name in ("original", "exact")}


def _frames(size=(32, 48)):
    return [torch.rand(1, 3, *size, generator=torch.Generator().manual_seed(s)) for s in (11, 12)]


@pytest.mark.parametrize("variant", ["original", "exact"])
def test_benchmark_nonkey_stage_is_the_streams_step(runners, variant):
    # the timed non-keyframe step restores the state a keyframe step leaves and runs the stream's own step;
    # the optimised path's matrix products may round differently from call to call (buffer alignment),
    # so it agrees to float rounding, the original bit for bit
    frames = _frames()
    runner = runners[variant]
    fns = runner.stage_functions(frames)
    stream = runner.model.stream()
    with torch.no_grad():
        stream.step(frames[0], keyframe=True)
        expected = stream.step(frames[1])
        fns["key_step"]()  # whatever ran before, the non-keyframe step starts from the same state
        out = fns["nonkey"]()
        again = fns["nonkey"]()
    for step in (out, again):
        for name in ("flow", "warped", "update", "edge"):
            if variant == "original":
                assert torch.equal(step[name], expected[name]), name
            else:
                torch.testing.assert_close(step[name], expected[name], rtol=1e-4, atol=1e-4 * expected[name].abs().max())
    if variant == "original":
        assert torch.equal(out["pred"], expected["pred"]) and torch.equal(out["logits"], expected["logits"])
    else:
        assert (out["pred"] == expected["pred"]).float().mean() > 0.99
        assert "logits" not in out  # the prediction-only stream of the optimised variants


@pytest.mark.parametrize("variant", ["original", "exact"])
def test_benchmark_nonkey_stage_runs_no_keyframe_work(runners, variant, monkeypatch):
    # the keyframe's class map belongs to the keyframe step: the timed non-keyframe step never computes it
    runner = runners[variant]
    fns = runner.stage_functions(_frames())
    calls = []
    for stage in ("keyframe", "keyframe_classes"):
        method = getattr(type(runner.model), stage)
        monkeypatch.setattr(type(runner.model), stage,
                            lambda self, *a, _s=stage, _f=method: calls.append(_s) or _f(self, *a))
    with torch.no_grad():
        fns["nonkey"]()
        assert calls == []
        fns["key_step"]()
    assert calls == ["keyframe", "keyframe_classes"]


@pytest.mark.parametrize("variant", ["original", "exact"])
def test_benchmark_fusion_stage_is_the_steps_merge(runners, variant):
    # the fusion stage (coarse map, merge, argmax on CoNet's outputs) gives the step's prediction
    frames = _frames((30, 42))  # not multiples of 4: the prediction is cropped
    fns = runners[variant].stage_functions(frames)
    with torch.no_grad():
        fused, step = fns["fusion"](), fns["nonkey"]()["pred"]
    assert fused.shape == step.shape == (1, 30, 42)
    if variant == "original":
        assert torch.equal(fused, step)
    else:  # CoNet's inputs to float rounding (see above)
        assert (fused == step).float().mean() > 0.99
    assert list(fns) == ["key", "key_step", "flownet", "warp", "conet", "fusion", "nonkey"]


def test_benchmark_variant_names():
    assert variant_options("fast") == {"fast": True} and variant_options("exact") == {}
    assert variant_options("fast@0.75") == {"fast": True, "nonkey_scale": 0.75}
    assert variant_options("exact-direct@0.5") == {"winograd": False, "nonkey_scale": 0.5}
    assert "nonkey_scale" not in VARIANT_OPTIONS["fast"]  # the table is not changed by a lookup
    for bad in ("fastest", "original@0.5", "fast@1", "fast@0", "fast@x", "fast@"):
        with pytest.raises(ValueError, match="variant"):
            variant_options(bad)


@pytest.mark.slow
def test_benchmark_runner_precision(net):
    # the conv peak a runner's GFLOP/s is compared with: bf16 for the fast variants only
    dtypes = {name: EVSSRunner(name, net).dtype for name in ("original", "exact", "fast", "fast@0.75")}
    assert dtypes == {"original": torch.float32, "exact": torch.float32,
                      "fast": torch.bfloat16, "fast@0.75": torch.bfloat16}


def test_output_difference_of_a_variant_with_itself_is_zero(runners):
    runner = runners["original"]
    diff = output_difference(runner, runner, make_frames(1, 32, 64, torch.device("cpu")))
    assert diff["nonkey_pred_disagree_pct"] == 0 and diff["nonkey_logits_max_abs_diff"] == 0
    assert diff["key_logits_max_abs_diff"] == 0 and diff["nonkey_pred_disagree_margin_gt_1e-4"] == 0


@pytest.mark.slow
def test_reference_weights_come_from_the_given_generator(reference_dir, make_weights):
    net = load_evss(19, "citys", torch.device("cpu"), reference_dir / "make_weights.py")
    expected = build_evss(19)
    load_checkpoint(expected, make_weights.make_state_dict("citys", 0))
    assert all(torch.equal(v, expected.state_dict()[k]) for k, v in net.state_dict().items())


def test_reference_weights_without_the_generator_are_a_clear_error(tmp_path):
    with pytest.raises(BenchmarkError, match="--make-weights"):
        load_evss(19, "citys", torch.device("cpu"))
    with pytest.raises(BenchmarkError, match="does not exist"):
        load_evss(19, "camvid", torch.device("cpu"), tmp_path / "make_weights.py")
    with pytest.raises(BenchmarkError, match="not a file"):
        load_evss(19, str(tmp_path / "missing.pth"), torch.device("cpu"))


def test_paired_ratio_range_by_hand():
    a, b = [10.0, 30.0, 20.0], [5.0, 10.0, 20.0]  # pairs 2x, 3x, 1x; medians 20 / 10 = 2x
    assert paired_ratio_range(a, b) == [1.0, 3.0]
    with pytest.raises(ValueError):
        paired_ratio_range(a, b[:2])


FAULTS_SCRIPT = """
import json, torch
from engine.benchmark.timing import time_stages
fns = {"v": {"fresh_64mb": lambda: torch.ones(16 << 20), "nothing": lambda: None}}
times, faults = time_stages(fns, repeats=3, warmup=0, device=torch.device("cpu"))
print(json.dumps({"times": times, "faults": faults}))
"""

THP = Path("/sys/kernel/mm/transparent_hugepage/enabled")


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self").exists(), reason="Linux page-fault counting")
@pytest.mark.skipif(THP.exists() and THP.read_text().startswith("[always]"),
                    reason="transparent huge pages always on: a 64 MB tensor takes ~32 faults, not 16384")
def test_benchmark_counts_page_faults_per_call():
    # glibc's default thresholds: a fresh 64 MB tensor is mmapped and faulted in page by page each call
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "THP_MEM_ALLOC_ENABLE"}
    proc = subprocess.run([sys.executable, "-c", FAULTS_SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert all(n >= 16384 for n in out["faults"]["v"]["fresh_64mb"]), out["faults"]  # 64 MiB of 4 KiB pages
    assert all(n < 100 for n in out["faults"]["v"]["nothing"]), out["faults"]
    assert len(out["times"]["v"]["nothing"]) == 3
