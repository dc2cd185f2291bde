"""What the evaluation tools (tools/val.py, tools/eval_distortion.py) build before evaluating: the data
set of evaluation windows, the network of a method, the class names, and the processes of a
``torchrun`` job."""
from __future__ import annotations

import os
from typing import Iterable

import torch
import torch.distributed as dist
from torch import nn

from dataset import CAMVID, CITYSCAPES, build_dataset, detect_layout
from engine.config import ConfigError
from model import build_davss, build_evss

__all__ = ["DATASETS", "DEFAULT_CLASSES", "build_eval_dataset", "build_net", "class_names", "davss_align_corners",
           "parse_key_values", "setup_distributed"]

DATASETS = ("cityscapes", "camvid", "synthetic")
DEFAULT_CLASSES = {"cityscapes": 19, "camvid": 11}


def _value(text: str):
    """``"3"`` → 3, ``"0.5"`` → 0.5, ``"true"`` / ``"false"`` / ``"none"`` → True / False / None, else the text."""
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"true": True, "false": False, "none": None}.get(text.lower(), text)


def parse_key_values(items: Iterable[str], option: str = "--synthetic") -> dict:
    """``["height=256", "num-classes=5"]`` → ``{"height": 256, "num_classes": 5}`` (numbers and booleans
    converted); raises :class:`engine.config.ConfigError` naming ``option`` for an item without ``=``."""
    out = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"{option} expects KEY=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        out[key.replace("-", "_")] = _value(value)
    return out


def build_eval_dataset(dataset: str, split: str = "val", data_root: str | None = None, list_file: str | None = None,
                       window: int = 10, missing: str = "auto", num_classes: int | None = None,
                       synthetic: dict | None = None, allow_missing: bool = False):
    """Evaluation windows of ``window`` frames, the labelled frame last.

    ``dataset``: one of :data:`DATASETS` (Cityscapes / CamVid under ``data_root``, optionally listed by
    ``list_file`` in the original's format; synthetic: ``synthetic`` holds the extra arguments of
    :class:`dataset.SyntheticVideoDataset`, ``num_classes`` its default class count). ``missing``:
    what to do with labelled frames whose window runs off the sequence, ``"error"`` or ``"skip"``;
    ``"auto"`` skips in the CamVid SegNet layout (its first labelled frames have no history).
    ``allow_missing``: leave out (with one warning) the labelled frames whose frame or label file is
    missing instead of stopping with :class:`dataset.MissingFileError`. Either way
    :func:`dataset.sample_counts` of the result tells how many labelled frames were expected and are used.
    """
    if dataset == "synthetic":
        if allow_missing:
            raise ConfigError("--allow-missing applies to data on disk (cityscapes, camvid), not to synthetic clips")
        kwargs = dict(synthetic or {})
        if num_classes is not None:
            kwargs.setdefault("num_classes", num_classes)
        return build_dataset("synthetic", split=split, mode="eval", **kwargs)
    if not data_root:
        raise ConfigError(f"--data-root is required for --dataset {dataset}")
    if missing == "auto":
        missing = "skip" if dataset == "camvid" and detect_layout(data_root, split) == "segnet" else "error"
    return build_dataset(dataset, data_root, split, "eval", list_file=list_file, length=window, missing=missing,
                         allow_missing=allow_missing)


def davss_align_corners(choice: str, dataset: str) -> bool:
    """DAVSS's resizes: ``choice`` ``"true"`` / ``"false"``, or ``"auto"``: as the original's test_PDA.py,
    True for CamVid, else False."""
    return choice == "true" or (choice == "auto" and dataset == "camvid")


def build_net(method: str, num_classes: int, keyframe: str = "deeplabv3plus", align_corners: bool = False) -> nn.Module:
    """The network of ``method`` (``"evss"`` or ``"davss"``) with random weights; DAVSS with the keyframe
    network ``keyframe`` and ``align_corners`` (:func:`davss_align_corners`)."""
    if method == "evss":
        return build_evss(num_classes)
    return build_davss(num_classes, align_corners=align_corners, keyframe=keyframe)


def class_names(dataset, num_classes: int) -> list[str]:
    """The data set's class names, else those of the known class set with ``num_classes`` classes
    (Cityscapes, CamVid), else ``class i``."""
    classes = getattr(dataset, "classes", None)
    if classes is not None and len(classes.names) == num_classes:
        return list(classes.names)
    for known in (CITYSCAPES, CAMVID):
        if known.num_classes == num_classes:
            return list(known.names)
    return [f"class {i}" for i in range(num_classes)]


def setup_distributed(device: str) -> tuple[int, int, str]:
    """Initialise torch.distributed under torchrun (NCCL on ``cuda``, the local rank's GPU; gloo on the
    CPU); returns (rank, world size, device). A single process keeps ``device`` as it is."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, device
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.startswith("cuda"):
        torch.cuda.set_device(local_rank)
        device = f"cuda:{local_rank}"
        backend = "nccl"
    else:
        backend = "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend)
    return dist.get_rank(), dist.get_world_size(), device
