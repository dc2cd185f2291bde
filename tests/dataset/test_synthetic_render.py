"""Rendering the synthetic video (:func:`dataset.synthetic.render_clip`): determinism, label ranges
and the exactness of the flow and occlusion masks."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from dataset.edges import edge_label
from dataset.synthetic import TRAINID_TO_CAMVID, render_clip, render_flow

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


# ------------------------------------------------------------------------------ determinism, labels
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
