"""Tests for the dataset package: label tables, edge labels, lists, layouts, transforms, errors.

Folder trees in each layout are written to tmp_path with tiny frames whose red value encodes the
frame number (and green the sequence), so a test can tell which file a sample decoded.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch


from dataset import (  # noqa: E402
    CAMVID,
    CAMVID_OFFSETS,
    CITYSCAPES,
    CITYSCAPES_OFFSETS,
    FrameSizeError,
    LabelValueError,
    ListFormatError,
    MissingFileError,
    RandomCrop,
    RandomHorizontalFlip,
    RandomScale,
    SequenceBoundaryError,
    build_dataset,
    camvid_frames,
    camvid_split,
    camvid_video_list,
    cityscapes_list,
    colorize,
    edge_label,
    label_ids_to_train_ids,
    read_list,
    train_transform,
    write_list,
)
from dataset.errors import DatasetError  # noqa: E402
from dataset.labels import CITYSCAPES_LABELS  # noqa: E402

H, W = 8, 12


# ------------------------------------------------------------------------------------------ trees
def _frame(number: int, seq_code: int = 0, size: tuple[int, int] = (H, W)) -> np.ndarray:
    """Flat RGB frame: red = number mod 200, green = 40·seq_code."""
    image = np.zeros((*size, 3), np.uint8)
    image[..., 0] = number % 200
    image[..., 1] = 40 * seq_code
    return image


def _write_frame(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))


def _write_label(path: Path, label: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), label.astype(np.uint8))


def _label(num_classes: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, num_classes, (H, W)).astype(np.uint8)


def _decoded_number(frames: torch.Tensor) -> list[int]:
    """Red value of each frame of a T×3×H×W clip (the frame number mod 200)."""
    return [round(float(v) * 255) for v in frames[:, 0, 0, 0]]


def make_cityscapes(root: Path, split: str = "val", ext: str = ".png", frames=range(10, 25),
                    label_suffix: str = "_gtFine_labelTrainIds.png") -> None:
    """Snippet aachen_000000 labelled on frame 19, with frames ``frames`` stored."""
    for number in frames:
        _write_frame(root / "leftImg8bit_sequence" / split / "aachen"
                     / f"aachen_000000_{number:06d}_leftImg8bit{ext}", _frame(number))
    _write_label(root / "gtFine" / split / "aachen" / f"aachen_000000_000019{label_suffix}", _label(19))


def make_camvid_video(root: Path) -> None:
    """0001TP label 6690 (video frame 29) and 0006R0 label f00930 (video frame 930), frames ±9/+5."""
    for seq, ext, label_name, video_frame, code in (("0001TP", "avi", "0001TP_006690", 29, 0),
                                                    ("0006R0", "mxf", "0006R0_f00930", 930, 1)):
        for number in range(video_frame - 9, video_frame + 6):
            _write_frame(root / "video_image" / seq / f"{seq}.{ext}_{number:06d}.png", _frame(number, code))
        _write_label(root / "11labels" / f"{label_name}.png", _label(12))


SEGNET_TRAIN = {"0016E5": [390, 420, 450, 480, 2400, 4350], "0006R0": [930, 960]}


def make_segnet(root: Path, split: str = "train", ext: str = ".png") -> None:
    for code, (seq, numbers) in enumerate(SEGNET_TRAIN.items()):
        tag = "f" if seq == "0006R0" else ""
        for number in numbers:
            name = f"{seq}_{tag}{number:05d}"
            _write_frame(root / split / f"{name}{ext}", _frame(number, code))
            _write_label(root / f"{split}annot" / f"{name}.png", _label(12, number))


# ---------------------------------------------------------------------------------------- labels
def test_cityscapes_table_matches_cityscapesscripts():
    labels = pytest.importorskip("cityscapesscripts.helpers.labels",
                                 reason="cityscapesscripts is not installed (pip install cityscapesscripts)")
    ours = {label.id: label for label in CITYSCAPES_LABELS}
    assert sorted(ours) == sorted(label.id for label in labels.labels) == list(range(-1, 34))
    for ref in labels.labels:
        expected = ref.trainId if 0 <= ref.trainId < 255 else 255  # -1 (license plate) = ignore
        assert (ours[ref.id].name, ours[ref.id].train_id) == (ref.name, expected)
    train = sorted((label for label in labels.labels if 0 <= label.trainId < 255), key=lambda label: label.trainId)
    assert CITYSCAPES.names == tuple(label.name for label in train)
    assert CITYSCAPES.colors == tuple(label.color for label in train)
    ids = np.array([[label.id for label in labels.labels if label.id >= 0]], np.uint8)
    converted = label_ids_to_train_ids(ids)
    assert converted.tolist() == [[label.trainId for label in labels.labels if label.id >= 0]]


def test_label_ids_to_train_ids_rejects_unknown_ids():
    with pytest.raises(LabelValueError, match=r"bad\.png: values \[34, 200\]"):
        label_ids_to_train_ids(np.array([[7, 34], [200, 0]], np.uint8), source="bad.png")


def test_colorize():
    pred = torch.tensor([[0, 10], [11, 255]])
    image = colorize(pred, CAMVID)
    assert image.dtype == np.uint8 and image.shape == (2, 2, 3)
    assert image[0, 0].tolist() == list(CAMVID.colors[0]) and image[0, 1].tolist() == list(CAMVID.colors[10])
    assert image[1].tolist() == [[0, 0, 0], [0, 0, 0]]  # void and ignore are black
    assert colorize(np.array([[13]]), CITYSCAPES)[0, 0].tolist() == [0, 0, 142]


# ----------------------------------------------------------------------------------------- edges
def test_edge_label_hand_checked():
    label = np.array([[0, 0, 1, 1, 1],
                      [0, 0, 1, 255, 1],
                      [0, 5, 1, 1, 1],
                      [0, 0, 0, 0, 0]], np.uint8)
    expected = np.array([[0, 1, 1, 0, 0],
                         [1, 1, 1, 0, 0],
                         [1, 1, 1, 1, 1],
                         [0, 1, 1, 1, 1]])
    edge = edge_label(label, 255, CITYSCAPES.thin_classes)
    assert edge.dtype == np.int64
    np.testing.assert_array_equal(edge, expected)


def test_edge_label_camvid_void_makes_edges():
    # 11 (void) is compared like any class: only 255 is excluded from pairs
    np.testing.assert_array_equal(edge_label(np.array([[3, 11]]), 255, CAMVID.thin_classes), [[1, 0]])
    np.testing.assert_array_equal(edge_label(np.array([[3, 3], [2, 3]]), 255, CAMVID.thin_classes),
                                  [[0, 1], [1, 0]])


def _edge_by_loops(label: np.ndarray, thin: tuple[int, ...]) -> np.ndarray:
    """ORIGINAL.md §9 written pixel by pixel."""
    h, w = label.shape
    z = np.zeros((h, w))

    def differ(a, b):
        return label[a] != label[b] and label[a] != 255 and label[b] != 255

    for i in range(h):
        for j in range(w):
            if i >= 1 and differ((i, j), (i - 1, j)):
                z[i, j] = 1
            if j <= w - 2 and differ((i, j), (i, j + 1)):
                z[i, j] = 1
            if i <= h - 2 and j <= w - 2 and differ((i, j), (i + 1, j + 1)):
                z[i, j] = 1
            if i <= h - 2 and j <= w - 2 and differ((i, j + 1), (i + 1, j)):
                z[i, j + 1] = 1
    return ((z + np.isin(label, thin)) >= 1).astype(np.int64)


def test_edge_label_matches_definition_on_random_maps():
    rng = np.random.default_rng(3)
    for values in ([0, 1, 5, 255], [2, 3, 11], [0, 12, 13, 255]):
        label = rng.choice(values, size=(9, 13)).astype(np.uint8)
        for thin in (CITYSCAPES.thin_classes, CAMVID.thin_classes):
            np.testing.assert_array_equal(edge_label(label, 255, thin), _edge_by_loops(label, thin))


# ----------------------------------------------------------------------------------------- lists
def test_list_round_trip_and_blank_lines(tmp_path):
    path = tmp_path / "list.txt"
    path.write_text("a/x.png b/x.png\n\n   \nc/y.png d/y.png\n\n")
    entries = read_list(path)
    assert [(e.frame, e.label) for e in entries] == [("a/x.png", "b/x.png"), ("c/y.png", "d/y.png")]
    assert entries[1].source == f"{path}:4"
    assert write_list(tmp_path / "out" / "copy.txt", entries) == 2
    assert read_list(tmp_path / "out" / "copy.txt")[0][:2] == ("a/x.png", "b/x.png")


@pytest.mark.parametrize("text, line", [("a b\na b c\n", 2), ("\nonly-one-field\n", 2)])
def test_list_bad_line_names_list_and_line(tmp_path, text, line):
    path = tmp_path / "bad.txt"
    path.write_text(text)
    with pytest.raises(ListFormatError, match=rf"bad\.txt:{line}: expected '<frame path> <label path>'"):
        read_list(path)


def test_list_missing_or_empty(tmp_path):
    with pytest.raises(MissingFileError, match="nope.txt: list file does not exist"):
        read_list(tmp_path / "nope.txt")
    (tmp_path / "empty.txt").write_text("\n\n")
    with pytest.raises(ListFormatError, match="no entries"):
        read_list(tmp_path / "empty.txt")


# ------------------------------------------------------------------------------------ cityscapes
def test_cityscapes_scan_pairs_and_windows(tmp_path):
    make_cityscapes(tmp_path)
    entries = cityscapes_list(tmp_path, "val")
    assert [(e.frame, e.label) for e in entries] == [
        ("leftImg8bit_sequence/val/aachen/aachen_000000_000019_leftImg8bit.png",
         "gtFine/val/aachen/aachen_000000_000019_gtFine_labelTrainIds.png")]

    pairs = build_dataset("cityscapes", tmp_path, "val", "train")
    assert [item.offset for item in pairs.items] == list(CITYSCAPES_OFFSETS)
    assert all(item.gap == item.offset for item in pairs.items)
    sample = pairs[len(pairs) - 1]
    assert set(sample) == {"frames", "label", "edge", "offset", "gap", "id"}
    assert sample["frames"].shape == (2, 3, H, W) and sample["frames"].dtype == torch.float32
    assert sample["label"].dtype == torch.int64 and sample["edge"].dtype == torch.int64
    assert _decoded_number(sample["frames"]) == [24, 19]
    assert (sample["id"], sample["offset"], sample["gap"]) == ("aachen_000000_000019", 5, 5)
    np.testing.assert_array_equal(sample["edge"].numpy(),
                                  edge_label(sample["label"].numpy(), 255, CITYSCAPES.thin_classes))

    windows = build_dataset("cityscapes", tmp_path, "val", "eval")
    window = windows[0]
    assert set(window) == {"frames", "label", "id", "gaps"}
    assert _decoded_number(window["frames"]) == list(range(10, 20)) and window["gaps"] == [1] * 9


def test_cityscapes_original_list_spelling_and_extension(tmp_path):
    """The original's list names ``_gtFine_trainIds.png`` and ``.png`` frames; the tree has
    ``labelTrainIds`` and ``.jpg``."""
    make_cityscapes(tmp_path, ext=".jpg")
    listed = tmp_path / "val.txt"
    listed.write_text("leftImg8bit_sequence/val/aachen/aachen_000000_000019_leftImg8bit.png "
                      "gtFine/val/aachen/aachen_000000_000019_gtFine_trainIds.png\n")
    windows = build_dataset("cityscapes", tmp_path, "val", "eval", list_file=listed, length=3)
    assert windows.items[0].frames[-1].endswith("aachen_000000_000019_leftImg8bit.jpg")
    assert windows.items[0].label.endswith("_gtFine_labelTrainIds.png")


def test_cityscapes_window_off_sequence_start(tmp_path):
    make_cityscapes(tmp_path)
    with pytest.raises(SequenceBoundaryError, match=r"sample 'aachen_000000_000019' \(frame 19\): no frame "
                                                    r"at offset -10 \(counted in frame numbers\)"):
        build_dataset("cityscapes", tmp_path, "val", "eval", length=11)
    assert len(build_dataset("cityscapes", tmp_path, "val", "eval", length=11, missing="skip")) == 0


def test_cityscapes_only_label_ids_hint(tmp_path):
    make_cityscapes(tmp_path, label_suffix="_gtFine_labelIds.png")
    with pytest.raises(MissingFileError, match="prepare_cityscapes"):
        cityscapes_list(tmp_path, "val")


def test_prepare_cityscapes_converts_and_lists(tmp_path):
    from tools import prepare_cityscapes

    make_cityscapes(tmp_path, split="train", label_suffix="_gtFine_labelIds.png")
    ids_path = tmp_path / "gtFine/train/aachen/aachen_000000_000019_gtFine_labelIds.png"
    _write_label(ids_path, np.array([[7, 8, 26, 0]] * 2, np.uint8))
    prepare_cityscapes.main(["--root", str(tmp_path), "--splits", "train", "--workers", "1"])
    converted = cv2.imread(str(ids_path).replace("labelIds", "labelTrainIds"), cv2.IMREAD_UNCHANGED)
    assert converted.tolist() == [[0, 1, 13, 255]] * 2
    assert [e.frame for e in read_list(tmp_path / "train.txt")] == [
        "leftImg8bit_sequence/train/aachen/aachen_000000_000019_leftImg8bit.png"]


# --------------------------------------------------------------------------------- CamVid video
def test_camvid_video_list_and_neighbours(tmp_path):
    make_camvid_video(tmp_path)
    entries = camvid_video_list(tmp_path, "train")
    assert [(e.frame, e.label) for e in entries] == [
        ("video_image/0001TP/0001TP.avi_000029.png", "11labels/0001TP_006690.png"),
        ("video_image/0006R0/0006R0.mxf_000930.png", "11labels/0006R0_f00930.png")]
    listed = tmp_path / "trainval.txt"
    write_list(listed, entries)

    pairs = build_dataset("camvid", tmp_path, "trainval", "train", list_file=listed)
    assert len(pairs) == 2 * len(CAMVID_OFFSETS)
    assert all(item.gap == item.offset for item in pairs.items)
    sample = pairs[0]
    assert sample["id"] == "0001TP_006690" and sample["offset"] == -5
    assert _decoded_number(sample["frames"]) == [24, 29]
    last = pairs[len(pairs) - 1]
    assert last["id"] == "0006R0_f00930" and _decoded_number(last["frames"]) == [935 % 200, 930 % 200]

    window = build_dataset("camvid_video", tmp_path, "train", "eval")[1]
    assert _decoded_number(window["frames"]) == [n % 200 for n in range(921, 931)]
    assert window["gaps"] == [1] * 9 and window["label"].max() <= 11


def test_camvid_video_missing_frame_is_boundary_error(tmp_path):
    make_camvid_video(tmp_path)
    (tmp_path / "video_image/0001TP/0001TP.avi_000025.png").unlink()
    with pytest.raises(SequenceBoundaryError, match=r"sample '0001TP_006690' \(frame 29\): no frame at offset -4"):
        build_dataset("camvid", tmp_path, "train", "train")


def test_camvid_split_matches_segnet_release(shared_dir):
    root = shared_dir / "data" / "camvid_segnet"
    if not root.is_dir():
        pytest.skip(f"{root} not found")
    for split in ("train", "val", "test"):
        for path in (root / split).glob("*.jpg"):
            seq, number = path.stem.split("_")
            assert camvid_split(seq, int(number.lstrip("f"))) == split, path.name


# ------------------------------------------------------------------------------- SegNet layout
def test_segnet_neighbours_by_rank_with_real_gaps(tmp_path):
    make_segnet(tmp_path)
    pairs = build_dataset("camvid", tmp_path, "train", "train", offsets=(-1, 2))
    got = {(item.id, item.offset): item.gap for item in pairs.items}
    # first frame of each sequence has no predecessor: skipped (SegNet training default)
    assert ("0016E5_00390", -1) not in got and ("0006R0_f00930", -1) not in got
    assert got[("0016E5_00390", 2)] == 60 and got[("0016E5_00480", -1)] == -30
    assert got[("0016E5_00480", 2)] == 4350 - 480 and got[("0016E5_04350", -1)] == 2400 - 4350
    assert ("0006R0_f00930", 2) not in got and got[("0006R0_f00960", -1)] == -30
    sample = pairs[pairs.items.index(next(i for i in pairs.items if i.id == "0016E5_00420" and i.offset == 2))]
    assert _decoded_number(sample["frames"]) == [480 % 200, 420 % 200] and sample["gap"] == 60

    with pytest.raises(SequenceBoundaryError, match=r"sample '0006R0_f00930' \(frame 930\): no frame at offset "
                                                    r"-1 \(counted in stored frames\)"):
        build_dataset("camvid_segnet", tmp_path, "train", "train", offsets=(-1,), missing="error")

    split_runs = build_dataset("camvid", tmp_path, "train", "train", offsets=(-1, 2), max_gap=100)
    # runs [390..480], [2400], [4350] of 0016E5: nothing crosses the jumps
    assert {(i.id, i.offset) for i in split_runs.items} == {
        ("0016E5_00390", 2), ("0016E5_00420", -1), ("0016E5_00420", 2), ("0016E5_00450", -1),
        ("0016E5_00480", -1), ("0006R0_f00960", -1)}

    windows = build_dataset("camvid", tmp_path, "train", "eval", length=3, missing="skip")
    assert [w.id for w in windows.items] == ["0016E5_00450", "0016E5_00480", "0016E5_02400", "0016E5_04350"]
    assert windows[1]["gaps"] == [30, 30]


def test_segnet_upstream_list_paths(tmp_path):
    make_segnet(tmp_path, ext=".jpg")
    listed = tmp_path / "train.txt"
    listed.write_text("/SegNet/CamVid/train/0016E5_00420.png /SegNet/CamVid/trainannot/0016E5_00420.png\n")
    frames, dropped = camvid_frames(tmp_path, "train", listed)
    assert [f.id for f in frames] == ["0016E5_00420"] and dropped == ()
    assert frames[0].sequence.paths[frames[0].index].endswith("train/0016E5_00420.jpg")
    # neighbours come from every stored frame of the sequence, not only the listed ones
    assert len(build_dataset("camvid", tmp_path, "train", "train", list_file=listed)) == 4 + 1


def test_prepare_camvid_lists(tmp_path):
    from tools import prepare_camvid

    make_segnet(tmp_path, ext=".jpg")
    prepare_camvid.main(["lists", "--root", str(tmp_path), "--splits", "train", "--list-dir", str(tmp_path / "l")])
    entries = read_list(tmp_path / "l" / "train.txt")
    assert len(entries) == 8 and entries[0][:2] == ("train/0006R0_f00930.jpg", "trainannot/0006R0_f00930.png")
    video = tmp_path / "v"
    make_camvid_video(video)
    prepare_camvid.main(["lists", "--root", str(video), "--splits", "all"])
    assert len(read_list(video / "all.txt")) == 2


def test_prepare_camvid_extract(tmp_path):
    from tools import prepare_camvid

    video = tmp_path / "0006R0.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 30, (W * 2, H * 2))
    if not writer.isOpened():
        pytest.skip("OpenCV cannot write an MJPG .avi here")
    for number in range(40):
        writer.write(cv2.cvtColor(np.full((H * 2, W * 2, 3), number * 5, np.uint8), cv2.COLOR_RGB2BGR))
    writer.release()
    _write_label(tmp_path / "data" / "11labels" / "0006R0_f00020.png", np.zeros((H * 2, W * 2)))
    prepare_camvid.main(["extract", "--root", str(tmp_path / "data"), str(video)])
    written = sorted(p.name for p in (tmp_path / "data/video_image/0006R0").iterdir())
    assert written == [f"0006R0.avi_{n:06d}.png" for n in range(11, 26)]
    window = build_dataset("camvid", tmp_path / "data", "train", "eval")[0]
    values = [round(float(v) * 255) for v in window["frames"][:, 0, 5, 5]]
    assert np.allclose(values, [5 * n for n in range(11, 21)], atol=3)  # MJPG is lossy


# ---------------------------------------------------------------------------------- bad inputs
def test_unreadable_frame(tmp_path):
    make_cityscapes(tmp_path)
    (tmp_path / "leftImg8bit_sequence/val/aachen/aachen_000000_000014_leftImg8bit.png").write_bytes(b"not a png")
    pairs = build_dataset("cityscapes", tmp_path, "val", "train")
    with pytest.raises(MissingFileError, match=r"aachen_000000_000014_leftImg8bit\.png: file cannot be decoded"):
        pairs[0]


def test_missing_labelled_frame_and_label(tmp_path):
    make_cityscapes(tmp_path)
    listed = tmp_path / "val.txt"
    listed.write_text("\nleftImg8bit_sequence/val/aachen/aachen_000000_000030_leftImg8bit.png "
                      "gtFine/val/aachen/aachen_000000_000019_gtFine_labelTrainIds.png\n")
    with pytest.raises(MissingFileError, match=r"aachen_000000_000030_leftImg8bit\.png: frame does not exist "
                                               r"under any image extension \(listed at .*val\.txt:2\)"):
        build_dataset("cityscapes", tmp_path, "val", "eval", list_file=listed)
    listed.write_text("leftImg8bit_sequence/val/aachen/aachen_000000_000019_leftImg8bit.png gtFine/nope.png\n")
    with pytest.raises(MissingFileError, match=r"nope\.png: label file does not exist"):
        build_dataset("cityscapes", tmp_path, "val", "eval", list_file=listed)
    listed.write_text("leftImg8bit_sequence/val/aachen/aachen_19.png gtFine/nope.png\n")
    with pytest.raises(ListFormatError, match=r"val\.txt:1: frame name 'aachen_19\.png' does not match"):
        build_dataset("cityscapes", tmp_path, "val", "eval", list_file=listed)


def test_label_values_out_of_range(tmp_path):
    make_cityscapes(tmp_path)
    bad = np.zeros((H, W), np.uint8)
    bad[0, :3] = [19, 254, 255]
    label_path = tmp_path / "gtFine/val/aachen/aachen_000000_000019_gtFine_labelTrainIds.png"
    _write_label(label_path, bad)
    with pytest.raises(LabelValueError, match=r"labelTrainIds\.png: label values \[19, 254\] are outside the "
                                              r"cityscapes classes 0\.\.18 \(ignore 255\)"):
        build_dataset("cityscapes", tmp_path, "val", "eval")[0]
    assert cv2.imwrite(str(label_path), np.full((H, W, 3), 7, np.uint8))  # grey in 3 equal channels: fine
    assert int(build_dataset("cityscapes", tmp_path, "val", "eval")[0]["label"].max()) == 7
    assert cv2.imwrite(str(label_path), np.full((H, W, 3), (128, 64, 128), np.uint8))
    with pytest.raises(LabelValueError, match="must have one channel"):
        build_dataset("cityscapes", tmp_path, "val", "eval")[0]


def test_camvid_label_void_is_valid_but_12_is_not(tmp_path):
    make_segnet(tmp_path)
    _write_label(tmp_path / "trainannot/0006R0_f00930.png", np.full((H, W), 11))
    windows = build_dataset("camvid", tmp_path, "train", "eval", length=1)
    assert int(windows[0]["label"].max()) == 11
    _write_label(tmp_path / "trainannot/0006R0_f00930.png", np.full((H, W), 12))
    with pytest.raises(LabelValueError, match=r"values \[12\] are outside the camvid classes 0\.\.10 \(ignore 11\)"):
        windows[0]


def test_frames_of_different_sizes(tmp_path):
    make_cityscapes(tmp_path)
    odd = tmp_path / "leftImg8bit_sequence/val/aachen/aachen_000000_000018_leftImg8bit.png"
    _write_frame(odd, _frame(18, size=(H, W + 2)))
    with pytest.raises(FrameSizeError, match=r"aachen_000000_000018_leftImg8bit\.png is 8x14 but "
                                             r".*aachen_000000_000010_leftImg8bit\.png is 8x12"):
        build_dataset("cityscapes", tmp_path, "val", "eval")[0]
    _write_frame(odd, _frame(18))
    _write_label(tmp_path / "gtFine/val/aachen/aachen_000000_000019_gtFine_labelTrainIds.png", np.zeros((H + 1, W)))
    with pytest.raises(FrameSizeError, match=r"labelTrainIds\.png is 9x12 but .*000019_leftImg8bit\.png is 8x12"):
        build_dataset("cityscapes", tmp_path, "val", "eval")[0]


def test_all_errors_are_value_errors():
    for error in (MissingFileError, ListFormatError, LabelValueError, FrameSizeError, SequenceBoundaryError):
        assert issubclass(error, DatasetError) and issubclass(error, ValueError)


def test_build_dataset_rejects_bad_arguments(tmp_path):
    with pytest.raises(DatasetError, match="unknown data set 'kitti'"):
        build_dataset("kitti", tmp_path)
    with pytest.raises(MissingFileError, match="neither video_image/"):
        build_dataset("camvid", tmp_path, "train")
    with pytest.raises(TypeError, match=r"\['list_file'\] apply to data on disk only"):
        build_dataset("synthetic", list_file="x.txt")


# ---------------------------------------------------------------------------------- transforms
def _sample(height: int = 6, width: int = 10) -> dict:
    """Sample whose frames, label, edge and flow all encode the column index, so any spatial
    mismatch between them shows."""
    columns = torch.arange(width).expand(height, width)
    frames = (columns / 255.0).expand(2, 3, height, width).clone()
    flow = torch.stack([columns.float(), torch.zeros(height, width)])
    return {"frames": frames, "label": columns.clone(), "edge": columns % 2, "flow": flow,
            "offset": 3, "gap": 3, "id": "x"}


def test_flip_applies_identically():
    sample = _sample()
    flipped = RandomHorizontalFlip(p=1.0)(sample, np.random.default_rng(0))
    assert torch.equal(flipped["frames"], sample["frames"].flip(-1))
    assert torch.equal(flipped["label"], sample["label"].flip(-1))
    assert torch.equal(flipped["edge"], sample["edge"].flip(-1))
    assert torch.equal(flipped["flow"][0], -sample["flow"][0].flip(-1))
    assert flipped["id"] == "x" and flipped["offset"] == 3
    assert RandomHorizontalFlip(p=0.0)(sample, np.random.default_rng(0)) is sample


def test_crop_and_scale_keep_frames_and_maps_aligned():
    transform = train_transform((4, 5), ignore_index=255, scale_range=(1.0, 2.0))
    for seed in range(10):
        out = transform(_sample(), np.random.default_rng(seed))
        assert out["frames"].shape == (2, 3, 4, 5) and out["label"].shape == (4, 5)
        assert out["label"].dtype == torch.int64
        # nearest label vs bilinear frames agree to within one source column
        assert (out["label"] - (out["frames"][1, 0] * 255).round()).abs().max() <= 1
        again = transform(_sample(), np.random.default_rng(seed))
        assert all(torch.equal(out[k], again[k]) for k in ("frames", "label", "edge", "flow"))


def test_crop_pads_with_fill_values():
    out = RandomCrop((8, 12), label_fill=11, edge_fill=255)(_sample(6, 10), np.random.default_rng(0))
    assert out["frames"].shape == (2, 3, 8, 12)
    assert (out["frames"][..., 6:, :] == 0).all() and (out["frames"][..., :, 10:] == 0).all()
    assert (out["label"][6:] == 11).all() and (out["edge"][:, 10:] == 255).all()
    assert torch.equal(out["label"][:6, :10], _sample(6, 10)["label"])


def test_scale_scales_flow_vectors():
    out = RandomScale((2.0, 2.0))(_sample(6, 10), np.random.default_rng(0))
    assert out["frames"].shape[-2:] == (12, 20) and out["flow"].shape == (2, 12, 20)
    assert out["flow"][0].max() > 10  # column index 9 in pixels of the doubled grid


def test_dataset_augmentation_is_reproducible(tmp_path):
    make_cityscapes(tmp_path)
    pairs = build_dataset("cityscapes", tmp_path, "val", "train",
                          transform=train_transform((5, 7), ignore_index=255), seed=1)
    first = pairs[3]
    assert torch.equal(first["frames"], pairs[3]["frames"]) and torch.equal(first["edge"], pairs[3]["edge"])
    draws = set()
    for epoch in range(6):
        pairs.set_epoch(epoch)
        draws.add(pairs[3]["label"].numpy().tobytes())
    assert len(draws) > 1


# ------------------------------------------------------------------------------ shared sample
def test_shared_camvid_segnet(shared_dir):
    root = shared_dir / "data" / "camvid_segnet"
    if not root.is_dir():
        pytest.skip(f"{root} not found")
    windows = build_dataset("camvid", root, "val", "eval", missing="skip")
    assert len(windows) == 101 - 9 and windows.items[0].id == "0016E5_07977"
    assert all(item.gaps == (2,) * 9 for item in windows.items)
    window = windows[0]
    assert window["frames"].shape == (10, 3, 360, 480) and window["label"].shape == (360, 480)
    assert 0 <= int(window["label"].min()) and int(window["label"].max()) <= 11
    with pytest.raises(SequenceBoundaryError, match="sample '0016E5_07959'"):
        build_dataset("camvid", root, "val", "eval")

    pairs = build_dataset("camvid", root, "train", "train")
    assert len(pairs) == sum(len(CAMVID_OFFSETS) * n - 30 for n in (62, 101, 204))  # 15 pairs lost per end
    sample = pairs[0]
    assert sample["frames"].shape == (2, 3, 360, 480) and abs(sample["gap"]) == 30 * abs(sample["offset"])

    subset = build_dataset("camvid", root, "test", "eval", list_file=root / "test_subset.txt", length=2,
                           missing="skip")
    assert len(subset) == 112 - 2  # the first frame of 0001TP and of Seq05VD have no predecessor
    with pytest.raises(MissingFileError, match=r"Seq05VD_f01500\.png: frame does not exist .*test\.txt:113"):
        build_dataset("camvid", root, "test", "eval", list_file=root / "test.txt")


def test_bench_loader_smoke(tmp_path):
    from engine.benchmark.loader import loader_throughput  # the data-loading benchmark on this layout

    make_cityscapes(tmp_path)
    result = loader_throughput(build_dataset("cityscapes", tmp_path, "val", "train"), num_workers=0)
    assert result["samples"] == len(CITYSCAPES_OFFSETS) - 1 and result["frames_per_s"] > 0
