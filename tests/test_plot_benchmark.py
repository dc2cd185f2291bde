"""tools/plot_benchmark.py: merges benchmark JSON files and draws the chart."""
from __future__ import annotations

import json

import pytest

from tools.plot_benchmark import collect, main

STAGES = {"key_ms": 900.0, "key_step_ms": 910.0, "flownet_ms": 250.0, "warp_ms": 5.0, "conet_ms": 300.0,
          "fusion_ms": 25.0, "nonkey_ms": 580.0, "amortised_k10_ms": 613.0}


def _run(path, variants, res="64x128"):
    entries = {name: dict(STAGES, key_ms=STAGES["key_ms"] * (i + 1)) for i, name in enumerate(variants)}
    entries["compare"] = {"key": 2.0}
    path.write_text(json.dumps({"threads": 2, "environment": {"cpu": "test cpu"}, "resolutions": {res: entries}}))
    return path


def test_first_occurrence_wins_and_png_is_written(tmp_path):
    a = _run(tmp_path / "a.json", ["original", "exact"])
    b = _run(tmp_path / "b.json", ["original", "fast"])
    rows = collect([a, b], "64x128")
    assert [name for name, _ in rows] == ["original", "exact", "fast"]
    assert rows[0][1]["key_ms"] == 900.0  # the first file's original, not the second's
    out = tmp_path / "fig" / "speed.png"
    assert main([str(a), str(b), "--resolution", "64x128", "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_missing_resolution_names_the_file(tmp_path):
    a = _run(tmp_path / "a.json", ["exact"])
    with pytest.raises(SystemExit, match="a.json: no results at 1024x2048"):
        collect([a], "1024x2048")
