"""What a resumed run may change, and the run folder's record of every resume.

A run folder's ``config.yaml`` and the ``config`` inside its checkpoints describe the settings its
weights were trained with. Resuming compares the new resolved config with the checkpoint's:

* keys in :data:`RESUME_MUTABLE` (how long the run goes on, where and how fast it runs, what it
  logs and how it evaluates) may change freely;
* any other difference stops with :class:`engine.config.ResumeConflictError` listing the keys,
  unless the user passes ``--resume-with-changes``.

Every resume, with the changes it brought, is appended to the run's history: the ``history`` list
carried by every later checkpoint and written to ``history.jsonl`` in the run folder.
"""
from __future__ import annotations

import fnmatch
import os
import time
from pathlib import Path
from typing import Any, Mapping

from .config import ResumeConflictError, flat_keys, get_key

#: Config keys (``fnmatch`` patterns) a resumed run may change without ``--resume-with-changes``.
RESUME_MUTABLE = (
    "out_dir", "device", "threads", "deterministic",
    "train.epochs", "train.iters", "train.stop_after",     # extend (or cut) a run
    "train.workers", "train.compile", "train.progress", "train.auto_resume",
    "train.log_every", "train.ckpt_every", "train.ckpt_every_iters", "train.tb_images",
    "train.eval_every", "train.eval_every_iters", "train.eval_first", "train.eval_final",
    "data.val_split", "data.val_list_file", "data.val_limit", "eval.*",
)

#: Stands for a key one of the two configs does not have (a checkpoint of an older version).
ABSENT = "<absent>"


def _leaves(cfg: Mapping) -> dict[str, Any]:
    return {key: get_key(cfg, key) for key in flat_keys(cfg) if not isinstance(get_key(cfg, key), Mapping)}


def config_changes(saved: Mapping, current: Mapping) -> dict[str, tuple[Any, Any]]:
    """Every leaf key whose value differs: ``{key: (saved value, current value)}``."""
    old, new = _leaves(saved), _leaves(current)
    return {key: (old.get(key, ABSENT), new.get(key, ABSENT)) for key in sorted(old.keys() | new.keys())
            if old.get(key, ABSENT) != new.get(key, ABSENT)}


def is_mutable(key: str) -> bool:
    return any(fnmatch.fnmatchcase(key, pattern) for pattern in RESUME_MUTABLE)


def resume_entry(checkpoint: str | os.PathLike, state: Mapping, current: Mapping, accept_changes: bool) -> dict:
    """The history entry of resuming ``checkpoint`` (its loaded ``state``) with config ``current``.

    Raises:
        ResumeConflictError: if a key outside :data:`RESUME_MUTABLE` differs and ``accept_changes``
            is false; the message lists the keys and the two ways out.
    """
    changes = config_changes(state.get("config") or {}, current)
    fixed = {key: change for key, change in changes.items() if not is_mutable(key)}
    if fixed and not accept_changes:
        listed = ", ".join(f"{key} {old!r} -> {new!r}" for key, (old, new) in fixed.items())
        raise ResumeConflictError(
            f"{checkpoint} was trained with other settings ({listed}); resuming would mix them in one set of "
            f"weights. Train into a new out_dir, or pass --resume-with-changes to continue with the new "
            f"settings and record the change in the run's history.jsonl")
    return {"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "iteration": int(state.get("iteration", 0)),
            "checkpoint": str(checkpoint), "changes": {key: list(change) for key, change in changes.items()},
            "accepted": "--resume-with-changes" if fixed else "allowed"}


def clean_stale_temporaries(folder: Path) -> list[Path]:
    """Remove the temporary files an interrupted atomic write left in ``folder`` (``.NAME.*.tmp``,
    see :mod:`engine.atomic`); returns the removed paths."""
    removed = []
    for path in sorted(folder.glob(".*.tmp")):
        if path.is_file():
            path.unlink()
            removed.append(path)
    return removed
