"""The embedded synthetic video: determinism, splits, label ranges, exactness of the flow, the data
set's samples and the writers of the real data sets' layouts."""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from dataset.edges import edge_label
from dataset.synthetic import (
    TRAINID_TO_CAMVID,
    TRAINID_TO_LABELID,
    SyntheticVideoDataset,
    clip_seed,
    main,
    render_clip,
    render_flow,
    write_camvid_layout,
    write_cityscapes_layout,
    write_segnet_layout,
)

H, W = 64, 128


@pytest.fixture(scope="module")
def clip() -> dict:
    return render_clip(11, 6, 96, 192, depth=True)


def _sample_nearest(image: np.ndarray, flow: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """image (H, W[, C]) sampled at pixel + flow (nearest); also whether the position is inside."""
    h, w = flow.shape[1:]
    x = np.rint(np.arange(w)[None, :] + flow[0]).astype(int)
    y = np.rint(np.arange(h)[:, None] + flow[1]).astype(int)
    inside = (x >= 0) & (x < w) & (y >= 0) & (y < h)
    return image[np.clip(y, 0, h - 1), np.clip(x, 0, w - 1)], inside


def _sample_bilinear(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    h, w = flow.shape[1:]
    x = np.clip(np.arange(w)[None, :] + flow[0], 0, w - 1)
    y = np.clip(np.arange(h)[:, None] + flow[1], 0, h - 1)
    x0 = np.minimum(np.floor(x).astype(int), w - 2)
    y0 = np.minimum(np.floor(y).astype(int), h - 2)
    ax, ay = (x - x0)[..., None], (y - y0)[..., None]
    im = image.astype(np.float64)
    return (im[y0, x0] * (1 - ax) * (1 - ay) + im[y0, x0 + 1] * ax * (1 - ay)
            + im[y0 + 1, x0] * (1 - ax) * ay + im[y0 + 1, x0 + 1] * ax * ay)


def _away_from(mask: np.ndarray, radius: int = 1) -> np.ndarray:
    """Pixels farther than ``radius`` from every True pixel of ``mask``."""
    k = np.ones((2 * radius + 1, 2 * radius + 1), np.uint8)
    return cv2.dilate(mask.astype(np.uint8), k) == 0


# ------------------------------------------------------------------------------ determinism, splits, labels
def test_same_seed_identical_and_prefix():
    a = render_clip(3, 4, H, W)
    b = render_clip(3, 4, H, W)
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    longer = render_clip(3, 6, H, W)
    np.testing.assert_array_equal(longer["frames"][:4], a["frames"])
    np.testing.assert_array_equal(longer["labels"][:4], a["labels"])
    np.testing.assert_array_equal(longer["flow_bwd"][:4], a["flow_bwd"])


def test_shapes_and_dtypes(clip):
    T, h, w = 6, 96, 192
    assert clip["frames"].shape == (T, h, w, 3) and clip["frames"].dtype == np.uint8
    assert clip["labels"].shape == (T, h, w) and clip["labels"].dtype == np.uint8
    for key in ("flow_bwd", "flow_fwd"):
        assert clip[key].shape == (T, 2, h, w) and clip[key].dtype == np.float32
        assert np.isfinite(clip[key]).all()
    assert not clip["flow_bwd"][0].any() and not clip["flow_fwd"][-1].any()
    assert clip["occ_bwd"].shape == (T, h, w) and clip["occ_bwd"].dtype == bool
    assert clip["depth"].shape == (T, h, w)


def test_different_seeds_differ():
    a, b = render_clip(1, 2, H, W, flows=False), render_clip(2, 2, H, W, flows=False)
    assert np.mean(a["frames"] != b["frames"]) > 0.5
    assert np.mean(a["labels"] != b["labels"]) > 0.1


def test_split_seeds_are_disjoint():
    seeds = {split: {clip_seed(split, i, s) for i in range(2000) for s in range(3)} for split in ("train", "val", "test")}
    assert not seeds["train"] & seeds["val"] and not seeds["train"] & seeds["test"] and not seeds["val"] & seeds["test"]
    train = SyntheticVideoDataset("train", "eval", num_clips=3, clip_len=2, height=32, width=64, window=2)
    val = SyntheticVideoDataset("val", "eval", num_clips=3, clip_len=2, height=32, width=64, window=2)
    assert not {train.clip_seed(i) for i in range(3)} & {val.clip_seed(i) for i in range(3)}
    assert not torch.equal(train[0]["frames"], val[0]["frames"])
    with pytest.raises(ValueError):
        clip_seed("bogus", 0)


def test_label_range_and_camvid_mapping():
    c19 = render_clip(5, 2, H, W, 19, flows=False)
    c11 = render_clip(5, 2, H, W, 11, flows=False)
    values = np.unique(c19["labels"])
    assert values.min() >= 0 and values.max() <= 18  # every pixel has a class: no 255
    assert {0, 2, 10, 13} <= set(values.tolist())  # road, building, sky, car
    np.testing.assert_array_equal(c11["labels"], TRAINID_TO_CAMVID[c19["labels"]])
    assert c11["labels"].max() <= 10
    np.testing.assert_array_equal(c11["frames"], c19["frames"])
    with pytest.raises(ValueError):
        render_clip(5, 1, H, W, num_classes=7)


# ------------------------------------------------------------------------------ exact flow
def test_backward_flow_reproduces_labels(clip):
    """Sampling frame t−1's labels at pixel + flow_bwd (nearest) gives frame t's labels wherever the
    point is visible in t−1: all but rounding at label boundaries."""
    for t in range(1, 6):
        flow, occ = clip["flow_bwd"][t], clip["occ_bwd"][t]
        assert occ.mean() < 0.1  # the occlusion mask does not hide errors
        warped, inside = _sample_nearest(clip["labels"][t - 1], flow)
        visible = ~occ & inside & _away_from(occ)
        agree = np.mean(warped[visible] == clip["labels"][t][visible])
        assert agree > 0.95, (t, agree)
        interior = visible & _away_from(edge_label(clip["labels"][t], 255, ()) == 1)
        assert np.mean(warped[interior] == clip["labels"][t][interior]) > 0.995


def test_flow_over_four_frames_is_sensitive(clip):
    """The direct flow 5 → 1 reproduces the labels; a zero flow or a flow off by a pixel does not."""
    flow, occ = render_flow(11, 6, 96, 192, 5, 1, occlusion=True)
    assert occ.mean() < 0.2
    visible = ~occ & _away_from(occ)
    errors = []
    for candidate in (flow, np.zeros_like(flow), flow + np.array([1.0, 0.0], np.float32)[:, None, None]):
        warped, _ = _sample_nearest(clip["labels"][1], candidate)
        errors.append(np.mean(warped[visible] != clip["labels"][5][visible]))
    assert errors[0] < 0.05 and errors[0] < 0.4 * errors[1] and errors[0] < 0.6 * errors[2], errors


def test_backward_flow_reproduces_texture(clip):
    """Bilinear sampling of frame t−1 at pixel + flow_bwd matches frame t photometrically (textures
    move with the surfaces), clearly better than with the flow off by one pixel."""
    for t in range(1, 6):
        flow, occ = clip["flow_bwd"][t], clip["occ_bwd"][t]
        edges = edge_label(clip["labels"][t], 255, ()) == 1  # object outlines are not anti-aliased
        keep = ~occ & _away_from(occ, 2) & _away_from(edges, 1)

        def error(f, t=t, keep=keep):
            return np.abs(_sample_bilinear(clip["frames"][t - 1], f) - clip["frames"][t]).mean(-1)[keep]

        err = error(flow)
        assert np.median(err) < 1.0 and err.mean() < 3.0, (t, np.median(err), err.mean())
        for shift in ((1.0, 0.0), (0.0, 1.0)):
            off = error(flow + np.array(shift, np.float32)[:, None, None])
            assert err.mean() < 0.7 * off.mean(), (t, shift, err.mean(), off.mean())


def test_forward_flow_inverts_backward_flow(clip):
    for t in range(1, 6):
        bwd, occ = clip["flow_bwd"][t], clip["occ_bwd"][t]
        fwd_at = _sample_bilinear(np.moveaxis(clip["flow_fwd"][t - 1], 0, -1), bwd)
        keep = ~occ & _away_from(occ, 2) & _away_from(edge_label(clip["labels"][t], 255, ()) == 1, 1)
        residual = np.hypot(*(np.moveaxis(fwd_at, -1, 0) + bwd))[keep]
        assert np.median(residual) < 0.05 and np.mean(residual < 0.5) > 0.97


def test_direct_flow_between_any_frames(clip):
    np.testing.assert_allclose(render_flow(11, 6, 96, 192, 4, 3)[0], clip["flow_bwd"][4], atol=1e-3)
    np.testing.assert_allclose(render_flow(11, 6, 96, 192, 2, 3)[0], clip["flow_fwd"][2], atol=1e-3)
    assert not render_flow(11, 6, 96, 192, 2, 2)[0].any()


def test_motion_is_moderate():
    """Camera and objects move about 1–4 px per frame at 128×256 (median over pixels)."""
    medians = [np.median(np.hypot(*render_clip(s, 3, 128, 256, occlusion=False)["flow_bwd"][2])) for s in (21, 22, 23)]
    assert 0.3 < np.mean(medians) < 4.0, medians


# ------------------------------------------------------------------------------ data set
def test_training_samples():
    calls = []

    def transform(sample, rng):
        calls.append(rng.random())
        return sample

    ds = SyntheticVideoDataset("train", "train", num_clips=2, clip_len=8, height=H, width=W,
                               offsets=(-2, -1, 1, 3), transform=transform, seed=4, with_flow=True)
    assert len(ds) == 2 * 3 * 4  # labelled frames 2..4 of each clip, four offsets
    sample = ds[1]  # clip 0, labelled frame 2, offset −1
    assert sample["offset"] == sample["gap"] == -1 and isinstance(sample["id"], str)
    assert sample["frames"].shape == (2, 3, H, W) and sample["frames"].dtype == torch.float32
    assert 0 <= sample["frames"].min() and sample["frames"].max() <= 1
    assert sample["label"].shape == (H, W) and sample["label"].dtype == torch.int64
    assert sample["edge"].dtype == torch.int64 and set(sample["edge"].unique().tolist()) <= {0, 1}
    clip = render_clip(clip_seed("train", 0, 4), 8, H, W)
    np.testing.assert_array_equal(sample["frames"][1].permute(1, 2, 0).mul(255).round().numpy(), clip["frames"][2])
    np.testing.assert_array_equal(sample["frames"][0].permute(1, 2, 0).mul(255).round().numpy(), clip["frames"][1])
    np.testing.assert_array_equal(sample["label"].numpy(), clip["labels"][2])
    np.testing.assert_array_equal(sample["edge"].numpy(), edge_label(clip["labels"][2], 255, (5, 11, 12)))
    np.testing.assert_allclose(sample["flow"].numpy(), clip["flow_bwd"][2], atol=1e-3)
    np.testing.assert_allclose(ds[2]["flow"].numpy(), clip["flow_fwd"][2], atol=1e-3)  # offset +1
    assert calls and ds[1]["frames"].shape == sample["frames"].shape
    first = calls[0]
    ds[1]
    assert calls[-1] == first  # the augmentation draw depends on (seed, epoch, index) only
    ds.set_epoch(1)
    ds[1]
    assert calls[-1] != first
    batch = torch.utils.data.default_collate([ds[i] for i in range(4)])  # mixed offsets collate
    assert batch["frames"].shape == (4, 2, 3, H, W) and batch["flow"].shape == (4, 2, H, W)
    no_flow = SyntheticVideoDataset("train", "train", num_clips=1, clip_len=8, height=H, width=W, offsets=(-1,))
    assert "flow" not in no_flow[0]  # the default: no flow
    with pytest.raises(ValueError):
        SyntheticVideoDataset("train", "train", num_clips=1, clip_len=5, height=H, width=W)


def test_eval_windows_and_camvid_classes():
    ds = SyntheticVideoDataset("val", "eval", num_clips=2, clip_len=7, height=H, width=W, num_classes=11,
                               window=4, seed=1)
    assert len(ds) == 2 and ds.ignore_index == 11 and ds.num_classes == 11
    s = ds[1]
    assert s["frames"].shape == (4, 3, H, W) and s["labels"].shape == (4, H, W) and s["flows"].shape == (3, 2, H, W)
    assert s["gaps"] == [1, 1, 1] and torch.equal(s["label"], s["labels"][-1])
    clip = render_clip(clip_seed("val", 1, 1), 7, H, W, 11)
    np.testing.assert_array_equal(s["labels"].numpy(), clip["labels"][3:])
    np.testing.assert_array_equal(s["flows"].numpy(), clip["flow_bwd"][4:])
    assert s["labels"].max() <= 10
    with pytest.raises(ValueError):
        SyntheticVideoDataset("val", "eval", num_clips=1, clip_len=3, height=H, width=W, window=4)


# ------------------------------------------------------------------------------ writers and CLI
def test_write_cityscapes_layout(tmp_path: Path):
    entries = write_cityscapes_layout(tmp_path, "val", num_clips=2, height=32, width=64, seed=0, num_frames=22,
                                      annotated=19)
    assert len(entries) == 2
    frames = sorted((tmp_path / "leftImg8bit_sequence" / "val").rglob("*.png"))
    assert len(frames) == 2 * 22
    pattern = re.compile(r"[a-z]+_\d{6}_\d{6}_leftImg8bit\.png")
    assert all(pattern.fullmatch(p.name) for p in frames)
    frame, label = entries[0]
    assert frame.startswith("leftImg8bit_sequence/val/") and frame.endswith("_000019_leftImg8bit.png")
    assert label == frame.replace("leftImg8bit_sequence", "gtFine").replace("leftImg8bit.png", "gtFine_labelTrainIds.png")
    train_ids = cv2.imread(str(tmp_path / label), cv2.IMREAD_UNCHANGED)
    label_ids = cv2.imread(str(tmp_path / label.replace("labelTrainIds", "labelIds")), cv2.IMREAD_UNCHANGED)
    assert train_ids.shape == (32, 64) and train_ids.max() <= 18
    np.testing.assert_array_equal(label_ids, TRAINID_TO_LABELID[train_ids])
    assert len(list((tmp_path / "gtFine").rglob("*_gtFine_labelTrainIds.png"))) == 2
    clip = render_clip(clip_seed("val", 0, 0), 22, 32, 64, flows=False)
    np.testing.assert_array_equal(train_ids, clip["labels"][19])
    image = cv2.cvtColor(cv2.imread(str(tmp_path / frame)), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(image, clip["frames"][19])
    assert (tmp_path / "val.txt").read_text().splitlines()[0] == f"{frame} {label}"


def test_write_camvid_layout(tmp_path: Path):
    entries = write_camvid_layout(tmp_path, "train", num_clips=1, height=24, width=32, num_frames=12,
                                  labelled=(9,), first_number=100)
    assert entries == [("video_image/SYT000/SYT000.avi_000109.png", "11labels/SYT000_000109.png")]
    assert len(list((tmp_path / "video_image" / "SYT000").glob("SYT000.avi_*.png"))) == 12
    assert (tmp_path / "video_image/SYT000/SYT000.avi_000100.png").is_file()
    label = cv2.imread(str(tmp_path / entries[0][1]), cv2.IMREAD_UNCHANGED)
    assert label.shape == (24, 32) and label.max() <= 10
    assert (tmp_path / "train.txt").read_text() == "video_image/SYT000/SYT000.avi_000109.png 11labels/SYT000_000109.png\n"


def test_write_segnet_layout(tmp_path: Path, shared_dir_optional):
    entries = write_segnet_layout(tmp_path, "val", num_clips=1, height=24, width=32, num_frames=3, ext="jpg",
                                  first_number=7959)
    names = ["SYV000_07959", "SYV000_07961", "SYV000_07963"]
    assert [Path(e[0]).stem for e in entries] == names
    for name in names:
        assert (tmp_path / "val" / f"{name}.jpg").is_file() and (tmp_path / "valannot" / f"{name}.png").is_file()
    lines = (tmp_path / "val.txt").read_text().splitlines()
    assert lines[0] == "/SegNet/CamVid/val/SYV000_07959.png /SegNet/CamVid/valannot/SYV000_07959.png"
    if shared_dir_optional is not None:  # same line format as the shared SegNet copy
        upstream = (shared_dir_optional / "data" / "camvid_segnet" / "val.txt").read_text().splitlines()[0]
        shape = re.compile(r"/SegNet/CamVid/(\w+)/(\w+)_(\d{5})\.png /SegNet/CamVid/\1annot/\2_\3\.png")
        assert shape.fullmatch(upstream) and shape.fullmatch(lines[0])


@pytest.fixture
def shared_dir_optional() -> Path | None:
    shared = Path(__file__).resolve().parents[1].parent / "shared"
    return shared if (shared / "data" / "camvid_segnet" / "val.txt").is_file() else None


def test_cli_preview_and_layout(tmp_path: Path, capsys):
    main(["--preview", str(tmp_path / "p.png"), "--height", "32", "--width", "64", "--frames", "20",
          "--out", str(tmp_path / "cs"), "--layout", "cityscapes", "--split", "train", "--num-clips", "1"])
    assert (tmp_path / "p.png").stat().st_size > 1000
    assert (tmp_path / "cs" / "train.txt").is_file()
    assert "preview" in capsys.readouterr().out
