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

    The file is UTF-8; lines end at ``\n``, ``\r\n`` or ``\r`` (other Unicode line breaks, form
    feeds included, are whitespace inside a line), so line numbers are the ones an editor shows.

    Raises:
        MissingFileError: if the list file does not exist.
        ListFormatError: for a non-blank line that is not exactly two fields or not UTF-8 (list and
            line named), or a list without entries.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{path}: list file does not exist")
    entries = []
    for number, raw in enumerate(path.read_bytes().splitlines(), start=1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            raise ListFormatError(f"{path}:{number}: not UTF-8 text (byte {raw[err.start]:#04x} "
                                  f"at column {err.start + 1})") from None
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
    """Write ``<frame> <label>`` lines (paths relative to the data root, UTF-8); returns the line count.

    Raises:
        ListFormatError: (nothing written) for an empty path or one holding whitespace, which
            :func:`read_list` could not read back; the list file and the entry's line are named.
    """
    lines = []
    for number, (frame, label, *_) in enumerate(entries, start=1):
        if frame.split() != [frame] or label.split() != [label]:
            raise ListFormatError(f"{path}:{number}: cannot write {frame!r} {label!r}: a listed path "
                                  "must be non-empty and hold no whitespace")
        lines.append(f"{frame} {label}\n")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text("".join(lines), encoding="utf-8")
    return len(lines)
