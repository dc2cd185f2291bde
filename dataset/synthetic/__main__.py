"""``python -m dataset.synthetic``: see :mod:`dataset.synthetic.cli` (user errors end with one line)."""

from model.errors import run_cli

from .cli import main

if __name__ == "__main__":
    run_cli(main)
