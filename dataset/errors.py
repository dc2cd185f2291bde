"""Exceptions raised by the data sets.

Every message names what is at fault: the file, the list file and line, or the sample and offset.
All of them are :class:`DatasetError`, a :class:`ValueError`, so callers can catch one type.
"""


class DatasetError(ValueError):
    """Base class of every data error raised by :mod:`dataset`."""


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
