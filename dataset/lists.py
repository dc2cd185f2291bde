"""List files in the original's format: one ``<frame path> <label path>`` pair per line.

Paths are relative to the data root. Blank lines are ignored. The layout modules
(:mod:`dataset.cityscapes`, :mod:`dataset.camvid`) generate lists by scanning folders.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

from .errors import ListFormatError, MissingFileError


class ListEntry(NamedTuple):
    """One labelled frame of a list: paths as written, and where it came from (for messages)."""

    frame: str
    label: str
    source: str  # "<list file>:<line>" or the scanned folder

    def error(self, message: str) -> ListFormatError:
        """A :class:`ListFormatError` about this entry."""
        return ListFormatError(f"{self.source}: {message}")


def read_list(path: str | Path) -> list[ListEntry]:
    """Parse a list file.

    Raises:
        MissingFileError: if the list file does not exist.
        ListFormatError: for a non-blank line that is not exactly two fields (list and line named),
            or a list without entries.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{path}: list file does not exist")
    entries = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2:
            raise ListFormatError(
                f"{path}:{number}: expected '<frame path> <label path>', got {line.strip()!r}")
        entries.append(ListEntry(fields[0], fields[1], f"{path}:{number}"))
    if not entries:
        raise ListFormatError(f"{path}: the list has no entries")
    return entries


def write_list(path: str | Path, entries: Iterable[ListEntry | tuple[str, str]]) -> int:
    """Write ``<frame> <label>`` lines (paths relative to the data root); returns the line count."""
    lines = [f"{entry[0]} {entry[1]}\n" for entry in entries]
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text("".join(lines))
    return len(lines)
