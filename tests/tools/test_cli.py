"""Every tool is a ``main(argv)`` run through :func:`model.errors.run_cli`: ``--help`` works, and a
user error raised inside ends in one line and its class's exit status."""
from __future__ import annotations

import importlib
import pkgutil

import pytest

import tools
from dataset import MissingFileError
from model.errors import CheckpointError, run_cli

TOOLS = sorted(m.name for m in pkgutil.iter_modules(tools.__path__))


@pytest.mark.parametrize("name", TOOLS)
def test_every_tool_takes_argv_and_help(name, capsys):
    module = importlib.import_module(f"tools.{name}")
    with pytest.raises(SystemExit) as info:
        run_cli(module.main, ["--help"])
    assert info.value.code == 0 and "usage:" in capsys.readouterr().out


@pytest.mark.parametrize("error, status", [(MissingFileError("a.png: file does not exist"), 3),
                                           (CheckpointError("b.pth: not a PyTorch checkpoint: text file"), 4)])
def test_user_error_is_one_line(error, status, capsys):
    def main(argv):
        raise error
    with pytest.raises(SystemExit) as info:
        run_cli(main, [])
    assert info.value.code == status and capsys.readouterr().err == f"error: {error}\n"


def test_debug_flag_keeps_the_traceback_and_is_not_passed_on():
    seen = []

    def main(argv):
        seen.append(argv)
        raise MissingFileError("a.png: file does not exist")
    with pytest.raises(MissingFileError):
        run_cli(main, ["--x", "--debug"])
    assert seen == [["--x"]]


def test_bugs_keep_their_traceback():
    def main(argv):
        raise KeyError("a bug")
    with pytest.raises(KeyError):
        run_cli(main, [])


def test_worker_traceback_is_reduced_to_the_original_message(capsys):
    wrapped = MissingFileError("Caught MissingFileError in DataLoader worker process 0.\nOriginal Traceback "
                               "(most recent call last):\n  File \"x.py\", line 1, in f\n"
                               "dataset.errors.MissingFileError: /data/a.png: file cannot be decoded\n")

    def main(argv):
        raise wrapped
    with pytest.raises(SystemExit):
        run_cli(main, [])
    assert capsys.readouterr().err == "error: /data/a.png: file cannot be decoded\n"
