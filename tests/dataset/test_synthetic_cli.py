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


@pytest.mark.parametrize("layout, frames, minimum", [("cityscapes", 12, 20), ("camvid", 19, 20), ("segnet", 0, 1)])
def test_too_few_frames_is_refused_up_front(tmp_path: Path, capsys, layout, frames, minimum):
    with pytest.raises(SystemExit) as exit_info:
        main(["--out", str(tmp_path / "out"), "--layout", layout, "--frames", str(frames)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].endswith(f"--frames {frames} is too short for the {layout} layout: it needs at least {minimum} "
                            f"frames per clip")
    assert not (tmp_path / "out").exists()


def test_shortest_clips_are_written(tmp_path: Path):
    main(["--out", str(tmp_path), "--frames", "20", "--height", "8", "--width", "8", "--num-clips", "1",
          "--split", "val"])
    assert (tmp_path / "gtFine/val/synthville/synthville_000000_000019_gtFine_labelTrainIds.png").is_file()


def test_help_states_the_minimum_frames(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "at least 20 for Cityscapes (label on frame 19)" in " ".join(capsys.readouterr().out.split())


@pytest.mark.slow
def test_python_dash_m_ends_user_errors_with_one_line(tmp_path: Path):
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run([sys.executable, "-m", "dataset.synthetic", "--frames", "12", "--out", str(tmp_path)],
                            cwd=root, capture_output=True, text=True)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == ("python -m dataset.synthetic: error: --frames 12 is too short "
                                                      "for the cityscapes layout: it needs at least 20 frames per clip")
