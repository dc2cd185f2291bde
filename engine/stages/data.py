"""The data of every stage, from the ``data:`` config section, all through :func:`dataset.build_dataset`.

``data.name`` picks the source: ``synthetic`` (the embedded street-scene clips, sized by
``data.synthetic``) or a layout on disk under ``data.root`` (cityscapes, camvid, camvid_video,
camvid_segnet). Training samples get the training augmentation of :func:`augmentation`.
"""
from __future__ import annotations

from typing import Iterable

from torch.utils.data import Dataset

from dataset import DATASETS, Transform, build_dataset, train_transform
from dataset.triplets import TripletDataset

from engine.config import PATH, POSITIVE_INT, PROBABILITY, Rule, integer, list_of, number, one_of, text

#: The ``data:`` section every stage shares (a stage may change its defaults).
DATA_DEFAULTS = {
    "name": "synthetic",        # cityscapes | camvid | camvid_video | camvid_segnet | synthetic
    "root": None,
    "train_split": "train",
    "val_split": "val",
    "list_file": None,
    "val_list_file": None,
    "max_gap": None,            # SegNet CamVid layout: split sequences at larger frame-number jumps
    "missing": None,            # error | skip (None: the data set's default)
    "allow_missing": False,     # drop (with a warning) labelled frames whose frame or label file is missing
    "num_classes": 19,
    "ignore_index": 255,
    "offsets": None,            # neighbour offsets of training pairs (None: the stage's default)
    "crop": None,               # [height, width] random crop (None: none)
    "scale": None,              # [min, max] random scale (None: none)
    "flip": 0.5,
    "val_limit": None,          # evaluate only the first N windows
    "synthetic": {"train_clips": 8, "val_clips": 4, "clip_len": 20, "height": 128, "width": 256,
                  "label_stride": 1},
}

#: Type and range of every ``data:`` key (a stage's own data keys are in its :attr:`Stage.rules`).
DATA_RULES: dict[str, Rule] = {
    "data.name": one_of(*DATASETS),
    "data.root": PATH,
    "data.train_split": text(),
    "data.val_split": text(null=True),
    "data.list_file": PATH,
    "data.val_list_file": PATH,
    "data.max_gap": integer(min=1, null=True),
    "data.missing": one_of("error", "skip", null=True),
    "data.num_classes": POSITIVE_INT,
    "data.ignore_index": integer(min=0, max=255),
    "data.offsets": list_of(integer(), null=True),
    "data.crop": list_of(POSITIVE_INT, length=2, null=True),
    "data.scale": list_of(number(above=0.0), length=2, null=True),
    "data.flip": PROBABILITY,
    "data.val_limit": integer(min=1, null=True),
    "data.synthetic.train_clips": integer(min=0),
    "data.synthetic.val_clips": integer(min=0),
    "data.synthetic.clip_len": POSITIVE_INT,
    "data.synthetic.height": integer(min=8),
    "data.synthetic.width": integer(min=8),
    "data.synthetic.label_stride": POSITIVE_INT,
}


def augmentation(cfg: dict) -> Transform | None:
    """The training transform of ``data.flip``, ``data.scale`` and ``data.crop`` (None: no augmentation)."""
    d = cfg["data"]
    crop = tuple(d["crop"]) if d["crop"] else None
    scale = tuple(d["scale"]) if d["scale"] else None
    if crop is None and scale is None and not d["flip"]:
        return None
    return train_transform(crop, d["ignore_index"], scale, float(d["flip"]))


def _synthetic_clips(cfg: dict, clips: str) -> dict:
    """``build_dataset("synthetic", ...)`` arguments of the ``data.synthetic`` section (``clips``: which count)."""
    d = cfg["data"]
    s = d["synthetic"]
    return {"num_clips": s[clips], "clip_len": s["clip_len"], "height": s["height"], "width": s["width"],
            "num_classes": d["num_classes"]}


def build_train_set(cfg: dict, offsets: Iterable[int] | None) -> Dataset:
    """Training pairs (labelled frame t, frame t + offset) for ``offsets`` (None: the data set's), augmented."""
    d = cfg["data"]
    common = {"offsets": tuple(offsets) if offsets is not None else None, "transform": augmentation(cfg),
              "seed": cfg["seed"]}
    if d["name"] == "synthetic":
        return build_dataset("synthetic", split=d["train_split"], mode="train", **common,
                             label_stride=d["synthetic"]["label_stride"], **_synthetic_clips(cfg, "train_clips"))
    return build_dataset(d["name"], d["root"], d["train_split"], "train", list_file=d["list_file"],
                         missing=d["missing"], max_gap=d["max_gap"], allow_missing=d["allow_missing"], **common)


def build_val_set(cfg: dict, length: int) -> Dataset | None:
    """Validation windows of ``length`` frames, labelled frame last (None: no validation split or clips).

    On disk, windows that run off the start of their sequence are left out (the labelled frame needs
    ``length`` − 1 predecessors) unless ``data.missing`` says otherwise.
    """
    d = cfg["data"]
    if not d["val_split"]:
        return None
    if d["name"] == "synthetic":
        if not d["synthetic"]["val_clips"]:
            return None
        return build_dataset("synthetic", split=d["val_split"], mode="eval", length=length, seed=cfg["seed"],
                             **_synthetic_clips(cfg, "val_clips"))
    return build_dataset(d["name"], d["root"], d["val_split"], "eval", list_file=d["val_list_file"], length=length,
                         missing=d["missing"] or "skip", max_gap=d["max_gap"], allow_missing=d["allow_missing"])


def build_window_set(cfg: dict, length: int) -> Dataset:
    """Augmented training windows of ``length`` consecutive frames (recurrent training).

    Synthetic: every window of the training clips (the scenes and frames of :func:`build_train_set`).
    On disk: the windows ending at each labelled training frame, those that run off their sequence
    left out.
    """
    d = cfg["data"]
    common = {"length": length, "transform": augmentation(cfg), "seed": cfg["seed"]}
    if d["name"] == "synthetic":
        return build_dataset("synthetic", split=d["train_split"], mode="windows", **common,
                             **_synthetic_clips(cfg, "train_clips"))
    return build_dataset(d["name"], d["root"], d["train_split"], "windows", list_file=d["list_file"],
                         missing="skip", max_gap=d["max_gap"], allow_missing=d["allow_missing"], **common)


def build_triplet_set(cfg: dict) -> Dataset:
    """DAVSS's training triplets [t − j, t − k, t] for j up to ``data.max_distance``
    (:class:`dataset.triplets.TripletDataset` over un-augmented pairs, augmented as triplets)."""
    max_distance = int(cfg["data"]["max_distance"])
    plain = dict(cfg, data=dict(cfg["data"], crop=None, scale=None, flip=0.0))
    pairs = build_train_set(plain, range(-max_distance, 0))
    return TripletDataset(pairs, max_distance, augmentation(cfg), seed=cfg["seed"])
