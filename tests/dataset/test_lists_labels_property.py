"""Property tests (hypothesis) of the list files and the label maps, against references written here.

* ``read_list`` on arbitrary bytes: the entries of a line-by-line parse (lines end at ``\\n``,
  ``\\r\\n`` or ``\\r``), or a :class:`ListFormatError` naming the list file and the 1-based line of
  the first bad line (wrong field count, or not UTF-8); never a raw ``UnicodeDecodeError``.
* ``write_list`` → ``read_list`` returns the same paths; a path that cannot survive the format
  (empty, or holding whitespace) is refused before anything is written.
* ``label_ids_to_train_ids`` equals a lookup in :data:`CITYSCAPES_LABELS` on random integer arrays;
  bad ids give a :class:`LabelValueError` naming the source and listing exactly the bad values.
* ``read_label`` / ``convert_label_ids`` on random image files (valid, truncated, corrupted, any
  dtype and channel count): the checked map, or :class:`MissingFileError` /
  :class:`LabelValueError` naming the file; never a cv2 or numpy exception.
"""
from __future__ import annotations

import re
import struct

import cv2
import numpy as np
import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes, arrays

from dataset.cityscapes import LABEL_IDS_SUFFIX, LABEL_SUFFIX, convert_label_ids
from dataset.errors import DatasetError, LabelValueError, ListFormatError, MissingFileError
from dataset.files import read_label
from dataset.labels import CAMVID, CITYSCAPES, CITYSCAPES_LABELS, label_ids_to_train_ids
from dataset.lists import ListEntry, read_list, write_list
from tests.property_settings import property_settings

#: hundreds of random cases per test: the full suite runs them, the fast subset does not
pytestmark = pytest.mark.slow

# ----------------------------------------------------------------------------------------- lists
#: Pieces of list lines: paths, separators, other line breaks (\x0c, \x85, \u2028 are whitespace
#: inside a line, not line ends), invalid UTF-8 and a BOM.
LIST_PIECES = st.sampled_from([
    b"a/x.png", b"lbl/x.png", b"\xc3\xa9t\xc3\xa9.png", b"\xe2\x80\xa8", b"\xc2\x85", b"\x0c", b"\x0b",
    b" ", b"\t", b"  ", b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xef\xbb\xbf", b"\x00", b"#",
])
LIST_BYTES = st.one_of(
    st.binary(max_size=120),
    st.lists(st.lists(LIST_PIECES, max_size=5).map(b"".join), max_size=6).flatmap(
        lambda lines: st.sampled_from([b"\n", b"\r\n", b"\r"]).map(lambda end: end.join(lines))),
)


def reference_list(data: bytes) -> tuple[list[tuple[str, str, int]], int | None]:
    """(frame, label, line) of every entry before the first bad line, and that line's number
    (0: no bad line but no entries either; None: a valid list)."""
    entries = []
    for number, raw in enumerate(re.split(rb"\r\n|\r|\n", data), start=1):
        try:
            fields = raw.decode("utf-8").split()
        except UnicodeDecodeError:
            return entries, number
        if len(fields) == 2:
            entries.append((fields[0], fields[1], number))
        elif fields:
            return entries, number
    return entries, (None if entries else 0)


@property_settings(max_examples=300)
@given(data=LIST_BYTES)
@example(data=b"a b\n\xff\xfe c\n")            # not UTF-8 on line 2
@example(data=b"a b\x0cc d\n")                 # a form feed is whitespace, not a line end
@example(data=b"a b\r\nc d\re f\n\n")          # \r\n and \r end lines
def test_read_list_on_arbitrary_bytes(tmp_path, data):
    path = tmp_path / "list.txt"
    path.write_bytes(data)
    entries, bad_line = reference_list(data)
    if bad_line is None:
        assert read_list(path) == [ListEntry(f, lbl, f"{path}:{n}") for f, lbl, n in entries]
        return
    with pytest.raises(DatasetError) as info:
        read_list(path)
    assert type(info.value) is ListFormatError
    message = str(info.value)
    assert "\n" not in message
    if bad_line:
        assert message.startswith(f"{path}:{bad_line}: "), message
    else:
        assert message == f"{path}: the list has no entries"


PATH_CHARS = st.characters(exclude_categories=("Cs",)).filter(lambda c: not c.isspace())
SAFE_PATHS = st.text(PATH_CHARS, min_size=1, max_size=12)


@property_settings(max_examples=150)
@given(pairs=st.lists(st.tuples(SAFE_PATHS, SAFE_PATHS), min_size=1, max_size=6))
def test_write_then_read_list_round_trips(tmp_path, pairs):
    path = tmp_path / "sub" / "list.txt"
    assert write_list(path, pairs) == len(pairs)
    assert read_list(path) == [ListEntry(f, lbl, f"{path}:{n}") for n, (f, lbl) in enumerate(pairs, start=1)]
    # ListEntry inputs (what read_list returns) write the same file again.
    write_list(tmp_path / "copy.txt", read_list(path))
    assert (tmp_path / "copy.txt").read_bytes() == path.read_bytes()


UNSAFE_PATHS = st.one_of(
    st.just(""),
    st.tuples(SAFE_PATHS | st.just(""), st.sampled_from(" \t\n\r\x0b\x0c\x85\u2028\u3000"), SAFE_PATHS | st.just(""))
    .map("".join),
)


@property_settings(max_examples=100)
@given(pairs=st.lists(st.tuples(SAFE_PATHS, SAFE_PATHS), max_size=3), bad=UNSAFE_PATHS,
       where=st.integers(0, 3), column=st.integers(0, 1))
def test_write_list_refuses_paths_the_format_cannot_hold(tmp_path, pairs, bad, where, column):
    good = ("a.png", "b.png")
    row = (bad, good[1]) if column == 0 else (good[0], bad)
    pairs = pairs[:where] + [row] + pairs[where:]
    path = tmp_path / "never" / "list.txt"
    with pytest.raises(ListFormatError) as info:
        write_list(path, pairs)
    message = str(info.value)
    assert message.startswith(f"{path}:{min(where, len(pairs) - 1) + 1}: ") and repr(bad) in message
    assert not path.exists()


# ------------------------------------------------------------------------------ label id → train id
TRAIN_ID = {label.id: label.train_id for label in CITYSCAPES_LABELS if label.id >= 0}
INT_DTYPES = [np.uint8, np.uint16, np.int8, np.int16, np.int32, np.int64, np.uint32]


@st.composite
def label_id_arrays(draw, dtypes=INT_DTYPES, shapes=array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=6)):
    """Small integer arrays, mostly Cityscapes labelIds with some values outside 0..33."""
    dtype = np.dtype(draw(st.sampled_from(dtypes)))
    info = np.iinfo(dtype)
    wild = st.integers(max(info.min, -5), min(info.max, 70_000))
    return draw(arrays(dtype, shapes, elements=st.one_of(st.integers(0, 33), st.integers(0, 33), wild)))


@property_settings(max_examples=300)
@given(ids=label_id_arrays(), lut=st.none() | arrays(np.uint8, 256))
def test_label_ids_to_train_ids_is_a_table_lookup(ids, lut):
    bad = sorted({int(v) for v in ids.ravel()} - TRAIN_ID.keys())
    if bad:
        with pytest.raises(LabelValueError) as info:
            label_ids_to_train_ids(ids, lut, source="some/file.png")
        assert str(info.value).startswith(f"some/file.png: values {bad} ")
        return
    table = TRAIN_ID if lut is None else {i: int(lut[i]) for i in TRAIN_ID}
    expected = np.array([table[int(v)] for v in ids.ravel()], np.uint8).reshape(ids.shape)
    out = label_ids_to_train_ids(ids, lut)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, expected)


# ----------------------------------------------------------------------------------- label files
CLASSES = {"camvid": CAMVID, "cityscapes": CITYSCAPES}


def _write(path, image: np.ndarray) -> None:
    ok, buffer = cv2.imencode(path.suffix, image)
    assert ok
    path.write_bytes(buffer.tobytes())


@st.composite
def label_images(draw) -> tuple[str, np.ndarray]:
    """(extension, image) that cv2 encodes as it is: PNG 8/16-bit, TIFF of any depth; 1, 3 or 4
    channels, equal or not; values mostly inside the CamVid/Cityscapes classes."""
    ext = draw(st.sampled_from([".png", ".tiff"]))
    dtypes = [np.uint8, np.uint16] if ext == ".png" else [np.uint8, np.uint16, np.int8, np.int16, np.int32,
                                                          np.float32, np.float64]
    dtype = np.dtype(draw(st.sampled_from(dtypes)))
    if dtype.kind == "f":
        wild, top = st.floats(-3, 300, width=dtype.itemsize * 8), 300
    else:
        info = np.iinfo(dtype)
        wild, top = st.integers(max(info.min, -3), min(info.max, 300)), info.max
    ignore_values = st.sampled_from([v for v in (11, 255) if v <= top])  # CamVid's, Cityscapes' ignore
    shape = draw(array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=5))
    grey = draw(arrays(dtype, shape, elements=st.one_of(st.integers(0, 10), ignore_values, wild)))
    channels = draw(st.sampled_from([1, 3, 4]))
    if channels == 1:
        return ext, grey
    if draw(st.booleans()):
        return ext, np.repeat(grey[..., None], channels, axis=2)
    return ext, draw(arrays(dtype, shape + (channels,), elements=st.integers(0, 12)))


def reference_check(decoded: np.ndarray, classes) -> np.ndarray | None:
    """The label map that read_label must return for a decoded image, or None if it must refuse it."""
    if decoded.ndim == 3:
        if (decoded != decoded[..., :1]).any():
            return None
        decoded = decoded[..., 0]
    if decoded.dtype.kind not in "iu":
        return None
    valid = ((decoded >= 0) & (decoded < classes.num_classes)) | (decoded == classes.ignore_index)
    return decoded if valid.all() else None


@property_settings(max_examples=200)
@given(image=label_images(), name=st.sampled_from(sorted(CLASSES)))
@example(image=(".tiff", np.array([[0, -1], [3, 2]], np.int16)), name="camvid")        # negative
@example(image=(".tiff", np.array([[0.5, 1.0], [3, 2]], np.float32)), name="camvid")   # fractional
def test_read_label_checks_every_decoded_map(tmp_path, image, name):
    classes = CLASSES[name]
    ext, array = image
    path = tmp_path / f"label{ext}"
    _write(path, array)
    expected = reference_check(cv2.imread(str(path), cv2.IMREAD_UNCHANGED), classes)
    if expected is None:
        with pytest.raises(LabelValueError) as info:
            read_label(path, classes)
        assert str(info.value).startswith(f"{path}: ")
        return
    out = read_label(path, classes)
    assert out.dtype == expected.dtype and out.ndim == 2
    np.testing.assert_array_equal(out, expected)


def _bmp_header(width: int, height: int) -> bytes:
    """A 24-bit BMP header (no pixels) declaring width × height."""
    return (b"BM" + struct.pack("<IHHI", 70, 0, 0, 54)
            + struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, 0, 0, 0, 0, 0) + bytes(16))


#: cv2.imread raises cv2.error (rather than returning None) for a header beyond its size limit.
HUGE_BMP = _bmp_header(4, 1 << 21)


@st.composite
def corrupted_images(draw) -> bytes:
    """Random bytes, or an encoded image (PNG, TIFF or BMP) truncated or with bytes overwritten."""
    if draw(st.integers(0, 3)) == 0:
        return draw(st.binary(max_size=200))
    ext = draw(st.sampled_from([".png", ".tiff", ".bmp"]))
    shape = draw(st.sampled_from([(3, 4), (5, 2, 3), (2, 3, 4)]))
    dtype = np.uint16 if ext != ".bmp" and draw(st.booleans()) else np.uint8
    array = draw(arrays(dtype, shape, elements=st.integers(0, 40)))
    ok, buffer = cv2.imencode(ext, array)
    data = bytearray(buffer.tobytes())
    if draw(st.booleans()):
        del data[draw(st.integers(0, len(data))):]
    else:
        for _ in range(draw(st.integers(1, 4))):
            data[draw(st.integers(0, min(len(data), 64) - 1))] = draw(st.integers(0, 255))
    return bytes(data)


def _cv2_raises(path) -> bool:
    try:
        cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    except cv2.error:
        return True
    return False


@property_settings(max_examples=300)
@given(blob=corrupted_images(), name=st.sampled_from(sorted(CLASSES)))
@example(blob=HUGE_BMP, name="camvid")
@example(blob=_bmp_header(1 << 21, 4), name="cityscapes")
def test_read_label_on_corrupted_files_raises_only_dataset_errors(tmp_path, blob, name):
    classes = CLASSES[name]
    path = tmp_path / "label.png"
    path.write_bytes(blob)
    try:
        out = read_label(path, classes)
    except (MissingFileError, LabelValueError) as err:
        assert str(err).startswith(f"{path}: ") and "\n" not in str(err)
        return
    np.testing.assert_array_equal(out, reference_check(cv2.imread(str(path), cv2.IMREAD_UNCHANGED), classes))


@property_settings(max_examples=200)
@given(blob=corrupted_images())
def test_convert_label_ids_on_corrupted_files_raises_only_dataset_errors(tmp_path, blob):
    path = tmp_path / f"x{LABEL_IDS_SUFFIX}"
    path.write_bytes(blob)
    assume(not _cv2_raises(path))  # cv2's own exception: test_convert_label_ids_on_a_huge_header
    target = tmp_path / f"x{LABEL_SUFFIX}"
    target.unlink(missing_ok=True)
    try:
        convert_label_ids(path, np.arange(256, dtype=np.uint8)[::-1].copy(), overwrite=True)
    except (MissingFileError, LabelValueError) as err:
        assert str(err).startswith(f"{path}: ") and "\n" not in str(err)
        assert not target.exists()
        return
    decoded = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert decoded.ndim == 2 and {int(v) for v in np.unique(decoded)} <= TRAIN_ID.keys()
    np.testing.assert_array_equal(cv2.imread(str(target), cv2.IMREAD_UNCHANGED), 255 - decoded)


def test_convert_label_ids_on_a_huge_header(tmp_path):
    path = tmp_path / f"x{LABEL_IDS_SUFFIX}"
    path.write_bytes(HUGE_BMP)
    with pytest.raises(MissingFileError, match=re.escape(str(path))):
        convert_label_ids(path, np.arange(256, dtype=np.uint8), overwrite=True)


@property_settings(max_examples=100)
@given(ids=label_id_arrays([np.uint8, np.uint16], array_shapes(min_dims=2, max_dims=2, max_side=6)),
       lut=arrays(np.uint8, 256))
def test_convert_label_ids_writes_the_lookup(tmp_path, ids, lut):
    path = tmp_path / f"x{LABEL_IDS_SUFFIX}"
    _write(path, ids)
    target = tmp_path / f"x{LABEL_SUFFIX}"
    target.unlink(missing_ok=True)
    bad = sorted({int(v) for v in ids.ravel()} - TRAIN_ID.keys())
    if bad:
        with pytest.raises(LabelValueError) as info:
            convert_label_ids(path, lut)
        assert str(info.value).startswith(f"{path}: values {bad} ")
        assert not target.exists()
        return
    assert convert_label_ids(path, lut)
    expected = np.array([lut[int(v)] for v in ids.ravel()], np.uint8).reshape(ids.shape)
    np.testing.assert_array_equal(cv2.imread(str(target), cv2.IMREAD_UNCHANGED), expected)
    assert not convert_label_ids(path, 255 - lut)  # an existing target is kept without overwrite
    np.testing.assert_array_equal(cv2.imread(str(target), cv2.IMREAD_UNCHANGED), expected)
