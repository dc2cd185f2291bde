"""Run ``tools.train`` with one fault injected at a chosen point (used by test_fault_injection.py).

    python tests/engine/fault_driver.py PHASE N [tools.train arguments ...]

PHASE is where the fault strikes, at the N-th time the process gets there:

    none        no fault
    forward     SIGKILL at the start of a training step's forward pass
    optimizer   SIGKILL inside the optimiser step, after the gradients and before the update
    checkpoint  SIGKILL while a checkpoint is being written: its temporary file is complete but not
                yet renamed over the checkpoint
    evaluation  SIGKILL during an evaluation
    sigterm     SIGTERM to its whole process group (the DataLoader workers too, as a cluster
                scheduler does) at the start of a training step
    corrupt     overwrite every frame of the training set (under --corrupt-root) with bytes that
                are not an image, at the start of a training step

The run itself goes through :func:`model.errors.run_cli`, as ``python -m tools.train`` does.
"""
from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import torch

from engine import atomic
from engine.stages.csrnet import CSRNetStage
from model.errors import run_cli
from tools import train as train_tool


def strike_at(n: int, fault) -> callable:
    """A function that runs ``fault`` on its ``n``-th call."""
    calls = [0]

    def tick() -> None:
        calls[0] += 1
        if calls[0] == n:
            fault()
    return tick


def kill() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def wrap(owner, name: str, before) -> None:
    original = getattr(owner, name)

    def wrapped(*args, **kwargs):
        before()
        return original(*args, **kwargs)
    setattr(owner, name, wrapped)


def corrupt_frames(root: Path) -> None:
    for path in sorted(root.rglob("*.png")):
        if "annot" not in path.parent.name:
            path.write_bytes(b"this is not an image\n")


def main(argv: list[str]) -> None:
    phase, n = argv[0], int(argv[1])
    args = argv[2:]
    if phase in ("forward", "sigterm", "corrupt"):
        if phase == "forward":
            fault = kill
        elif phase == "sigterm":
            def fault() -> None:
                os.killpg(os.getpgid(0), signal.SIGTERM)
        else:
            root = Path(args[args.index("--corrupt-root") + 1])
            args = [a for i, a in enumerate(args) if a != "--corrupt-root" and args[i - 1] != "--corrupt-root"]

            def fault() -> None:
                corrupt_frames(root)
        wrap(CSRNetStage, "train_step", strike_at(n, fault))
    elif phase == "optimizer":
        wrap(torch.optim.Adam, "step", strike_at(n, kill))
    elif phase == "evaluation":
        wrap(CSRNetStage, "evaluate", strike_at(n, kill))
    elif phase == "checkpoint":
        tick = strike_at(n, kill)
        real_fsync = atomic.os.fsync

        def fsync(fd: int) -> None:
            real_fsync(fd)
            if ".pth." in os.readlink(f"/proc/self/fd/{fd}"):
                tick()
        atomic.os.fsync = fsync
    elif phase != "none":
        raise SystemExit(f"unknown phase {phase!r}")
    run_cli(train_tool.main, args)


if __name__ == "__main__":
    main(sys.argv[1:])
