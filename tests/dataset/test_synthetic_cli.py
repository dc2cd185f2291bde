"""The synthetic data set's command line, ``python -m dataset.synthetic`` (:mod:`dataset.synthetic.cli`)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from dataset.synthetic.cli import main


@pytest.mark.slow
def test_cli_preview_and_layout(tmp_path: Path, capsys):
    main(["--preview", str(tmp_path / "p.png"), "--height", "32", "--width", "64", "--frames", "20",
          "--out", str(tmp_path / "cs"), "--layout", "cityscapes", "--split", "train", "--num-clips", "1"])
    assert (tmp_path / "p.png").stat().st_size > 1000
    assert (tmp_path / "cs" / "train.txt").is_file()
    assert "preview" in capsys.readouterr().out


@pytest.mark.slow
def test_python_dash_m_runs_the_cli():
    """``python -m dataset.synthetic`` reaches the same command line (package ``__main__``)."""
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run([sys.executable, "-m", "dataset.synthetic", "--help"], cwd=root, capture_output=True,
                            text=True, check=True)
    assert result.stdout.startswith("usage: python -m dataset.synthetic") and "--layout" in result.stdout
