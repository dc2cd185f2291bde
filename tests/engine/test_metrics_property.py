"""Property tests (hypothesis) of :class:`engine.metrics.ConfusionMatrix` against numpy written here.

On random label maps of random shapes and integer dtypes, with ignore pixels (255, the class count
as CamVid's void, -1, or a class id itself) and classes that never occur:

* the matrix equals a count with ``np.add.at`` (rows = label, columns = prediction, ignore skipped);
* IoU_c = TP / (TP + FP + FN) per class, NaN exactly where that union is empty (the class is neither
  in the labels nor predicted on a labelled pixel); mIoU = mean over the classes with a non-empty
  union, so a class only predicted (IoU 0) counts and one absent from both does not: the
  convention of docs/evaluation.md and of Cityscapes' evaluation (cityscapesscripts skips NaN
  scores in its average);
* updating batch by batch, one update of the concatenation, and shards combined with ``merge`` /
  ``state_dict`` give the same matrix;
* out-of-range labels, or predictions out of range at labelled pixels, raise ``ValueError``, while
  any prediction at an ignored pixel is accepted.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import assume, given
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes

from engine.metrics import ConfusionMatrix
from tests.property_settings import property_settings

#: hundreds of random cases per test: the full suite runs them, the fast subset does not
pytestmark = pytest.mark.slow

DTYPES = [torch.uint8, torch.int16, torch.int32, torch.int64]


@st.composite
def problems(draw, max_batches: int = 4):
    """(num_classes, ignore_index, [(pred, label), ...]): label values in [0, C) or the ignore
    index, predictions in [0, C) at labelled pixels and anything the dtype holds at ignored ones."""
    num_classes = draw(st.integers(1, 7))
    dtype = draw(st.sampled_from(DTYPES))
    ignore_choices = [255, num_classes, draw(st.integers(0, num_classes - 1))]
    if dtype != torch.uint8:
        ignore_choices.append(-1)
    ignore = draw(st.sampled_from(ignore_choices))
    # Classes a batch may use: a random subset, so that some classes stay empty.
    used = draw(st.lists(st.integers(0, num_classes - 1), min_size=1, max_size=num_classes, unique=True))
    batches = []
    for _ in range(draw(st.integers(1, max_batches))):
        shape = draw(array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=5))
        size = math.prod(shape)
        label = draw(st.lists(st.sampled_from(used + [ignore]), min_size=size, max_size=size))
        pred = draw(st.lists(st.sampled_from(used) | st.integers(0, num_classes - 1), min_size=size, max_size=size))
        label = np.array(label, np.int64).reshape(shape)
        pred = np.array(pred, np.int64).reshape(shape)
        wild = draw(st.integers(0, 255 if dtype == torch.uint8 else 300))  # anything, where ignored
        pred = np.where(label == ignore, wild, pred)
        batches.append((torch.from_numpy(pred).to(dtype), torch.from_numpy(label).to(dtype)))
    return num_classes, ignore, batches


def reference_matrix(num_classes: int, ignore: int, batches) -> np.ndarray:
    matrix = np.zeros((num_classes, num_classes), np.int64)
    for pred, label in batches:
        p, lbl = pred.numpy().astype(np.int64).ravel(), label.numpy().astype(np.int64).ravel()
        keep = lbl != ignore
        np.add.at(matrix, (lbl[keep], p[keep]), 1)
    return matrix


def reference_scores(matrix: np.ndarray) -> tuple[list[float], float, float]:
    """Per-class IoU (NaN for an empty union), mIoU over the non-empty unions, pixel accuracy."""
    iou = []
    for c in range(len(matrix)):
        tp = int(matrix[c, c])
        fn = int(matrix[c].sum()) - tp
        fp = int(matrix[:, c].sum()) - tp
        iou.append(tp / (tp + fp + fn) if tp + fp + fn else math.nan)
    present = [v for v in iou if not math.isnan(v)]
    total = int(matrix.sum())
    return iou, (sum(present) / len(present) if present else math.nan), (
        int(np.trace(matrix)) / total if total else math.nan)


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, rel=1e-12, abs=0)


@property_settings(max_examples=200)
@given(problem=problems())
def test_matrix_and_scores_match_numpy(problem):
    num_classes, ignore, batches = problem
    cm = ConfusionMatrix(num_classes, ignore_index=ignore)
    for pred, label in batches:
        cm.update(pred, label)
    expected = reference_matrix(num_classes, ignore, batches)
    assert cm.matrix.dtype == torch.int64
    np.testing.assert_array_equal(cm.matrix.numpy(), expected)
    iou, miou, accuracy = reference_scores(expected)
    got = cm.iou().tolist()
    assert all(_same(a, b) for a, b in zip(got, iou, strict=True)), (got, iou)
    assert _same(cm.miou(), miou) and _same(cm.pixel_accuracy(), accuracy)
    summary = cm.summary()
    assert summary["iou"] == [None if math.isnan(v) else pytest.approx(v, rel=1e-12) for v in iou]
    assert summary["miou"] == (None if math.isnan(miou) else pytest.approx(miou, rel=1e-12))
    assert summary["num_pixels"] == int(expected.sum())


@property_settings(max_examples=150)
@given(problem=problems(max_batches=5), split=st.integers(0, 5))
def test_batches_concatenation_and_shards_agree(problem, split):
    num_classes, ignore, batches = problem
    one_by_one = ConfusionMatrix(num_classes, ignore_index=ignore)
    for pred, label in batches:
        one_by_one.update(pred, label)
    together = ConfusionMatrix(num_classes, ignore_index=ignore).update(
        torch.cat([p.reshape(-1) for p, _ in batches]), torch.cat([lbl.reshape(-1) for _, lbl in batches]))
    shard_a, shard_b = (ConfusionMatrix(num_classes, ignore_index=ignore) for _ in range(2))
    for i, (pred, label) in enumerate(batches):
        (shard_a if i < split else shard_b).update(pred, label)
    merged = ConfusionMatrix.from_state_dict(shard_a.state_dict()).merge(shard_b.state_dict())
    for cm in (together, merged):
        assert torch.equal(cm.matrix, one_by_one.matrix)
    assert one_by_one.miou() == together.miou() or math.isnan(one_by_one.miou()) and math.isnan(together.miou())


@property_settings(max_examples=100)
@given(problem=problems(max_batches=1), where=st.integers(0, 10**6), bad_label=st.booleans(),
       above=st.sampled_from([-1, 0, 1, 90]))
def test_out_of_range_values_at_labelled_pixels_raise(problem, where, bad_label, above):
    num_classes, ignore, [(pred, label)] = problem
    value = -1 if above < 0 else num_classes + above  # just outside [0, C), or far outside
    pred, label = pred.to(torch.int64).reshape(-1), label.to(torch.int64).reshape(-1)
    labelled = torch.nonzero(label != ignore).reshape(-1)
    assume(value != ignore and not 0 <= value < num_classes and labelled.numel() > 0)
    i = labelled[where % labelled.numel()]
    (label if bad_label else pred)[i] = value
    cm = ConfusionMatrix(num_classes, ignore_index=ignore)
    with pytest.raises(ValueError, match="label values" if bad_label else "pred values"):
        cm.update(pred, label)
    assert cm.total == 0
