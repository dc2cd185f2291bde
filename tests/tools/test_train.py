"""The command line of tools/train.py: resolved configs and the one-line config errors."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from model.errors import run_cli
from tools import train as train_tool

ROOT = Path(__file__).resolve().parents[2]


def test_print_config_of_a_recipe_names_its_stage(capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    train_tool.main(["--config", "configs/synthetic_evss.yaml", "--print-config", "train.iters=3"])
    cfg = yaml.safe_load(capsys.readouterr().out)
    assert cfg["stage"] == "evss" and cfg["train"]["iters"] == 3 and cfg["eval"]["distances"] == [1, 5, 9]


def test_config_error_is_one_line_and_exit_status_2(capsys):
    with pytest.raises(SystemExit) as info:
        run_cli(train_tool.main, ["--stage", "flownet", "--print-config", "flow.mdoe=both"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown config key ") and err.count("\n") == 1 and "flow.mode" in err


def test_help_lists_every_stage():
    text = train_tool.stage_list()
    for name in ("csrnet", "flownet", "evss", "recurrent", "davss_dmnet", "davss"):
        assert f"  {name} " in text


@pytest.mark.slow
def test_cli_bad_key_exits_with_message(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "tools.train", "--stage", "flownet", "--print-config",
                           "flow.mdoe=both"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "flow.mdoe" in proc.stderr and "flow.mode" in proc.stderr


