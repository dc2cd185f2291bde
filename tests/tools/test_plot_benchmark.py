"""tools/plot_benchmark.py: the command line writes the PNG, and a missing resolution is a one-line error."""
from __future__ import annotations

import json

import pytest

from model.errors import run_cli
from tools.plot_benchmark import main

ENTRY = {"key_ms": 900.0, "key_step_ms": 910.0, "flownet_ms": 250.0, "warp_ms": 5.0, "conet_ms": 300.0,
         "fusion_ms": 25.0, "nonkey_ms": 580.0, "amortised_k10_ms": 613.0}


def _run(path, variants):
    entries = {name: ENTRY for name in variants}
    path.write_text(json.dumps({"threads": 2, "environment": {"cpu": "test cpu"},
                                "resolutions": {"64x128": entries}}))
    return path


def test_png_is_written(tmp_path, capsys):
    a, b = _run(tmp_path / "a.json", ["original", "exact"]), _run(tmp_path / "b.json", ["fast"])
    out = tmp_path / "fig" / "speed.png"
    assert main([str(a), str(b), "--resolution", "64x128", "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"wrote {out}" in capsys.readouterr().out


def test_missing_resolution_is_one_line(tmp_path, capsys):
    a = _run(tmp_path / "a.json", ["exact"])
    with pytest.raises(SystemExit) as info:
        run_cli(main, [str(a), "--out", str(tmp_path / "x.png")])
    assert info.value.code == 2
    assert capsys.readouterr().err.strip() == f"error: {a}: no results at 1024x2048 (has 64x128)"
