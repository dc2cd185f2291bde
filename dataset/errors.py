"""Exceptions raised by the data sets.

Every message names what is at fault: the file, the list file and line, or the sample and offset.
All of them are :class:`DatasetError`, a :class:`ValueError` and a :class:`model.errors.UserError`
(a command line ends them with one line and exit status 3), so callers can catch one type.
"""
from model.errors import UserError


class DatasetError(UserError, ValueError):
    """Base class of every data error raised by :mod:`dataset`."""

    exit_code = 3


class MissingFileError(DatasetError):
    """A frame, label or list file is missing or cannot be decoded."""


class ListFormatError(DatasetError):
    """A list line does not parse; the message gives the list file and the 1-based line number."""


class LabelValueError(DatasetError):
    """A label map is not single-channel or holds values outside the class range."""


class FrameSizeError(DatasetError):
    """The frames of one clip, or a frame and its label, differ in size."""


class SequenceBoundaryError(DatasetError):
    """A neighbour or window frame lies outside the frames stored for its sequence."""
