"""Segmentation measures, one module per measure.

* :mod:`.confusion`: :class:`ConfusionMatrix` (IoU, mIoU, pixel accuracy).
* :mod:`.temporal_consistency`: :class:`TemporalConsistency`, ETC's TC and the temporal IoU
  between consecutive predictions related by optical flow.
* :mod:`.flow_consistency`: :func:`fb_consistency_mask`, the forward-backward check that says
  where a flow can be trusted.
* :mod:`.video_consistency`: :class:`VideoConsistency` / :func:`video_consistency`, VSPW's
  ``VC_n``.

Conventions shared by all of them
---------------------------------
* Class maps (``pred`` and ``label``) are integer tensors ``N×H×W`` or ``H×W`` (any integer
  dtype, converted to int64).
* Flows are float tensors ``N×2×H×W`` (or ``2×H×W``) in pixels, channel 0 = dx, channel 1 = dy,
  in the backward convention: ``flow_a→b(x, y)`` says where pixel ``(x, y)`` of frame ``a`` is
  found in frame ``b``. A :class:`engine.flow_estimators.FlowEstimator` called as
  ``estimator(current=frame_a, previous=frame_b)`` returns exactly ``flow_a→b``.
* Every measure accumulates over batches and clips, ``all_reduce()`` sums it over the processes
  of a distributed run, ``state_dict()`` / ``merge()`` combine shards, and ``compute()`` (or
  ``summary()``) returns JSON-ready results with ``None`` for undefined values.

Class maps are warped by :func:`warp_labels` (nearest neighbour), which lives in the model layer
(:mod:`model.label_warp`) because the training losses use it too; it is re-exported here.
"""
from model.label_warp import flow_target_in_frame, warp_labels

from .confusion import ConfusionMatrix
from .flow_consistency import fb_consistency_mask
from .temporal_consistency import TemporalConsistency
from .video_consistency import VideoConsistency, video_consistency

__all__ = [
    "ConfusionMatrix",
    "warp_labels",
    "flow_target_in_frame",
    "fb_consistency_mask",
    "TemporalConsistency",
    "VideoConsistency",
    "video_consistency",
]
