"""Atomic file writes: write to a temporary file in the same folder, fsync, then rename over the target.

A crash mid-write leaves the previous file intact (and at worst a stray ``.NAME.*.tmp`` file, which
:func:`engine.resume.clean_stale_temporaries` removes), never a truncated one. A write that fails (a
full disk, no permission) removes its temporary file and raises :class:`WriteError`.
"""
from __future__ import annotations

import io
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Iterator

import torch

from model.errors import WriteError

__all__ = ["WriteError", "atomic_open", "atomic_torch_save", "atomic_write_json", "atomic_write_text"]


@contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w") -> Iterator[IO]:
    """Open a temporary sibling of ``path`` for writing; on success it replaces ``path``."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as err:
        raise WriteError(f"{path}: cannot write here ({err.strerror or err})") from err
    try:
        with os.fdopen(fd, mode) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(err, OSError) and not isinstance(err, WriteError):
            kept = "the previous version is unchanged" if path.exists() else "nothing was written"
            raise WriteError(f"{path}: could not be written ({err.strerror or err}); {kept}") from err
        raise


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` through :func:`atomic_open`. The checkpoint is serialised in memory first: torch's
    writer turns a failing file write (a full disk) into an unrelated error, a plain write does not."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    with atomic_open(path, "wb") as handle:
        handle.write(buffer.getbuffer())


def atomic_write_text(text: str, path: str | os.PathLike) -> None:
    with atomic_open(path, "w") as handle:
        handle.write(text)


def atomic_write_json(obj: Any, path: str | os.PathLike) -> None:
    atomic_write_text(json.dumps(obj, indent=2) + "\n", path)
