"""Nothing silent on the data side: a labelled frame whose frame or label is missing is an error in a
scanned tree as in a list, or with ``allow_missing`` left out with one warning and counted; every
evaluation set reports the labelled frames it expected and serves (``dataset.sample_counts``)."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from dataset import (
    AugmentedWindows,
    Dropped,
    MissingFileError,
    SampleCounts,
    SyntheticVideoDataset,
    build_dataset,
    camvid_segnet_list,
    cityscapes_list,
    sample_counts,
)
from tests.dataset.test_dataset import _frame, _label, _write_frame, _write_label, make_camvid_video, make_segnet

GT = "gtFine/val/aachen"
SEQ = "leftImg8bit_sequence/val/aachen"


def make_two_snippets(root: Path) -> None:
    """Snippets aachen_000000 and aachen_000001, frames 10..19 each, labelled on frame 19 with a
    trainIds label, its labelIds and its colour image (as the Cityscapes download has them)."""
    for seq in (0, 1):
        for number in range(10, 20):
            _write_frame(root / SEQ / f"aachen_{seq:06d}_{number:06d}_leftImg8bit.png", _frame(number, seq))
        stem = root / GT / f"aachen_{seq:06d}_000019_gtFine_"
        for kind in ("labelTrainIds", "labelIds", "color"):
            _write_label(Path(f"{stem}{kind}.png"), _label(19, seq))


def _one_warning(record: list[warnings.WarningMessage]) -> str:
    messages = [str(w.message) for w in record if "allow_missing" in str(w.message)]
    assert len(messages) == 1, messages
    return messages[0]


def test_complete_tree_counts_every_labelled_frame(tmp_path):
    make_two_snippets(tmp_path)
    windows = build_dataset("cityscapes", tmp_path, "val", "eval")
    assert sample_counts(windows) == SampleCounts(2, 2)
    assert sample_counts(windows).summary() == "2 of 2 labelled frames evaluated"


@pytest.mark.parametrize("kept", ["labelIds", "color"])
def test_cityscapes_scan_missing_train_ids_label(tmp_path, kept):
    make_two_snippets(tmp_path)
    (tmp_path / GT / "aachen_000001_000019_gtFine_labelTrainIds.png").unlink()
    if kept == "color":
        (tmp_path / GT / "aachen_000001_000019_gtFine_labelIds.png").unlink()
    fix = "convert it with tools/prepare_cityscapes.py" if kept == "labelIds" else "restore it"
    with pytest.raises(MissingFileError, match=rf"aachen_000001_000019_gtFine_labelTrainIds\.png: label does not "
                                               rf"exist, but aachen_000001_000019_gtFine_{kept}\.png does: {fix}"):
        build_dataset("cityscapes", tmp_path, "val", "eval")
    with pytest.raises(MissingFileError, match="labelTrainIds.png: label does not exist"):
        cityscapes_list(tmp_path, "val")  # what tools/prepare_cityscapes.py writes lists from

    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        windows = build_dataset("cityscapes", tmp_path, "val", "eval", allow_missing=True)
    assert "left out 1 labelled frame(s)" in _one_warning(record)
    assert "aachen_000001_000019" in _one_warning(record)
    assert [item.id for item in windows.items] == ["aachen_000000_000019"]
    counts = sample_counts(windows)
    assert (counts.expected, counts.used) == (2, 1)
    assert [(d.id, d.reason) for d in counts.dropped] == [("aachen_000001_000019", "label missing")]
    assert counts.summary() == "1 of 2 labelled frames evaluated (1 skipped: label missing)"


def test_cityscapes_scan_snippet_without_any_label(tmp_path):
    make_two_snippets(tmp_path)
    for kind in ("labelTrainIds", "labelIds", "color"):
        (tmp_path / GT / f"aachen_000001_000019_gtFine_{kind}.png").unlink()
    with pytest.raises(MissingFileError, match=r"aachen_000001_000010\.\._000019_leftImg8bit: a snippet of frames "
                                               r"10\.\.19 without any gtFine file in .*gtFine/val/aachen"):
        build_dataset("cityscapes", tmp_path, "val", "train")
    with pytest.warns(UserWarning, match=r"left out 1 labelled frame\(s\) .*: aachen_000001_000010"):
        windows = build_dataset("cityscapes", tmp_path, "val", "eval", allow_missing=True)
    assert sample_counts(windows).reasons() == {"snippet without a label": 1} and len(windows) == 1


def test_cityscapes_scan_label_without_frame(tmp_path):
    make_two_snippets(tmp_path)
    (tmp_path / SEQ / "aachen_000000_000019_leftImg8bit.png").unlink()
    with pytest.raises(MissingFileError, match=r"aachen_000000_000019_leftImg8bit\.png: frame of .*"
                                               r"aachen_000000_000019_gtFine_labelTrainIds\.png does not exist"):
        build_dataset("cityscapes", tmp_path, "val", "eval")
    with pytest.warns(UserWarning, match="aachen_000000_000019"):
        windows = build_dataset("cityscapes", tmp_path, "val", "eval", allow_missing=True)
    # the frames 10..18 left of that snippet are not reported again as a snippet without a label
    assert sample_counts(windows).dropped == (Dropped("aachen_000000_000019", "frame missing",
                                                      sample_counts(windows).dropped[0].detail),)


def test_error_counts_the_other_missing_samples(tmp_path):
    make_two_snippets(tmp_path)
    for seq in (0, 1):
        (tmp_path / SEQ / f"aachen_{seq:06d}_000019_leftImg8bit.png").unlink()
    with pytest.raises(MissingFileError, match=r"\(1 more samples of .* lack a file\); --allow-missing "
                                               r"\(data.allow_missing=true in training\) leaves such samples out"):
        build_dataset("cityscapes", tmp_path, "val", "eval")


def test_listed_missing_label_is_dropped_with_allow_missing(tmp_path):
    make_two_snippets(tmp_path)
    listed = tmp_path / "val.txt"
    listed.write_text("".join(f"{SEQ}/aachen_{s:06d}_000019_leftImg8bit.png {GT}/aachen_{s:06d}_000019_gtFine_"
                              f"labelTrainIds.png\n" for s in (0, 1)))
    (tmp_path / GT / "aachen_000000_000019_gtFine_labelTrainIds.png").unlink()
    with pytest.raises(MissingFileError, match=r"labelTrainIds\.png: label file does not exist \(listed at .*val\.txt:1\)"):
        build_dataset("cityscapes", tmp_path, "val", "eval", list_file=listed)
    with pytest.warns(UserWarning, match="val.txt: left out 1"):
        windows = build_dataset("cityscapes", tmp_path, "val", "eval", list_file=listed, allow_missing=True)
    assert [item.id for item in windows.items] == ["aachen_000001_000019"]
    assert (sample_counts(windows).expected, sample_counts(windows).used) == (2, 1)


@pytest.mark.parametrize("removed, reason", [("trainannot/0016E5_00420.png", "label missing"),
                                             ("train/0016E5_00420.png", "frame missing")])
def test_segnet_scan_frame_or_label_missing(tmp_path, removed, reason):
    make_segnet(tmp_path)
    (tmp_path / removed).unlink()
    named = r"trainannot/0016E5_00420\.png: label of" if reason == "label missing" else \
        r"train/0016E5_00420\.<image ext>: frame of .*trainannot/0016E5_00420\.png does not exist"
    with pytest.raises(MissingFileError, match=named):
        build_dataset("camvid", tmp_path, "train", "eval", length=1)
    with pytest.raises(MissingFileError, match=named):
        camvid_segnet_list(tmp_path, "train")
    with pytest.warns(UserWarning, match="left out 1 labelled frame"):
        windows = build_dataset("camvid", tmp_path, "train", "eval", length=1, allow_missing=True)
    assert "0016E5_00420" not in [item.id for item in windows.items] and len(windows) == 7
    assert sample_counts(windows).reasons() == {reason: 1} and sample_counts(windows).expected == 8


def test_camvid_video_scan_label_without_frame(tmp_path):
    make_camvid_video(tmp_path)
    (tmp_path / "video_image/0006R0/0006R0.mxf_000930.png").unlink()
    with pytest.raises(MissingFileError, match=r"no frame 0006R0\.<ext>_000930 for label .*0006R0_f00930\.png"):
        build_dataset("camvid", tmp_path, "train", "eval")
    with pytest.warns(UserWarning, match="0006R0_f00930"):
        windows = build_dataset("camvid", tmp_path, "train", "eval", allow_missing=True)
    assert [item.id for item in windows.items] == ["0001TP_006690"]
    assert sample_counts(windows).summary() == "1 of 2 labelled frames evaluated (1 skipped: frame missing)"


def test_training_pairs_drop_missing_too(tmp_path):
    make_segnet(tmp_path)
    (tmp_path / "trainannot/0006R0_f00960.png").unlink()
    with pytest.raises(MissingFileError):
        build_dataset("camvid", tmp_path, "train", "train")
    with pytest.warns(UserWarning, match="0006R0_f00960"):
        pairs = build_dataset("camvid", tmp_path, "train", "train", allow_missing=True)
    ids = {item.id for item in pairs.items}
    assert "0006R0_f00960" not in ids and len(ids) == 7  # its frame stays a neighbour of 0006R0_f00930


def test_skipped_windows_are_counted_with_their_reason(tmp_path):
    make_segnet(tmp_path)
    windows = build_dataset("camvid", tmp_path, "train", "eval", length=3, missing="skip")
    counts = sample_counts(windows)
    assert (counts.expected, counts.used) == (8, 4)
    assert {d.id for d in counts.dropped} == {"0016E5_00390", "0016E5_00420", "0006R0_f00930", "0006R0_f00960"}
    assert counts.summary() == "4 of 8 labelled frames evaluated (4 skipped: window runs off the sequence start)"
    assert counts.as_json() == {"samples_expected": 8, "samples_used": 4,
                                "samples_dropped": {"window runs off the sequence start": 4}}
    assert counts.limited(1).summary() == ("1 of 8 labelled frames evaluated (4 skipped: window runs off the "
                                           "sequence start; 3 skipped: left out by --limit)")
    assert counts.limited(None) is counts and counts.limited(10) is counts


def test_window_over_a_missing_frame_is_not_called_the_sequence_start(tmp_path):
    make_two_snippets(tmp_path)
    (tmp_path / SEQ / "aachen_000000_000015_leftImg8bit.png").unlink()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a gap inside a labelled snippet is not a missing label
        windows = build_dataset("cityscapes", tmp_path, "val", "eval", missing="skip")
    assert [(d.id, d.reason) for d in sample_counts(windows).dropped] == [
        ("aachen_000000_000019", "window a frame inside the sequence is missing")]


def test_synthetic_and_augmented_sets_report_counts():
    synthetic = SyntheticVideoDataset("val", "eval", num_clips=3, clip_len=2, height=8, width=8, window=2)
    assert sample_counts(synthetic) == SampleCounts(3, 3)
    windows = build_dataset("synthetic", split="train", mode="windows", length=2, num_clips=2, clip_len=3,
                            height=8, width=8)
    assert isinstance(windows, AugmentedWindows) and sample_counts(windows) == SampleCounts(4, 4)
    with pytest.raises(TypeError, match="allow_missing"):
        build_dataset("synthetic", split="val", mode="eval", allow_missing=True)


def test_augmented_windows_pass_on_the_dropped_frames(tmp_path):
    make_segnet(tmp_path)
    windows = build_dataset("camvid", tmp_path, "train", "windows", length=3, missing="skip")
    assert sample_counts(windows) == sample_counts(build_dataset("camvid", tmp_path, "train", "eval", length=3,
                                                                 missing="skip"))


def test_sample_counts_must_add_up():
    with pytest.raises(ValueError, match="do not add up"):
        SampleCounts(3, 1, (Dropped("a", "label missing"),))
