"""engine.benchmark.plot: merges benchmark JSON files and draws the chart."""
from __future__ import annotations

import json

import pytest

from engine.benchmark.plot import collect, default_title, plot
from engine.benchmark.variants import BenchmarkError

STAGES = {"key_ms": 900.0, "key_step_ms": 910.0, "flownet_ms": 250.0, "warp_ms": 5.0, "conet_ms": 300.0,
          "fusion_ms": 25.0, "nonkey_ms": 580.0, "amortised_k10_ms": 613.0}


def write_run(path, variants, res="64x128"):
    """A benchmark JSON with ``variants`` (their keyframe times 900, 1800, ...), a comparison and a baseline."""
    entries = {name: dict(STAGES, key_ms=STAGES["key_ms"] * (i + 1)) for i, name in enumerate(variants)}
    entries["lraspp_fp32"] = {"key_step_ms": 300.0}
    entries["compare"] = {"key": 2.0}
    entries["compare_methods"] = {"runners": variants[:2], "ratios": {}}
    path.write_text(json.dumps({"threads": 2, "environment": {"cpu": "test cpu"}, "resolutions": {res: entries}}))
    return path


def test_first_occurrence_wins_and_png_is_written(tmp_path):
    a = write_run(tmp_path / "a.json", ["original", "exact"])
    b = write_run(tmp_path / "b.json", ["original", "fast"])
    rows = collect([a, b], "64x128")
    assert [name for name, _ in rows] == ["original", "exact", "lraspp_fp32", "fast"]
    assert rows[0][1]["key_ms"] == 900.0  # the first file's original, not the second's
    assert default_title([a, b], "64x128") == "64x128, 2 threads, test cpu (2 runs)"
    out = tmp_path / "fig" / "speed.png"
    plot(rows, "title", out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_missing_resolution_names_the_file(tmp_path):
    a = write_run(tmp_path / "a.json", ["exact"])
    with pytest.raises(BenchmarkError, match="a.json: no results at 1024x2048"):
        collect([a], "1024x2048")
