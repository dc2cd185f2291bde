"""Writing synthetic clips in the real data sets' layouts (Cityscapes video, CamVid video, SegNet
CamVid) with their list files, so the disk loaders and tools can be tried without the data."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from ..lists import write_list
from .classes import TRAINID_TO_LABELID
from .render import render_clip
from .splits import clip_seed

CITYSCAPES_ANNOTATED = 19
"""Annotated frame of each Cityscapes-layout snippet (the real data set's 20th frame)."""
CAMVID_LABELLED = (9, 19)
"""Labelled frame indices of each CamVid video-layout clip."""
MIN_FRAMES = {"cityscapes": CITYSCAPES_ANNOTATED + 1, "camvid": max(CAMVID_LABELLED) + 1, "segnet": 1}
"""Fewest frames per clip each layout's default labelled frames need."""


def _imwrite(path: Path, image: np.ndarray) -> None:
    """Write an RGB (H, W, 3) or single-channel (H, W) uint8 image, creating its folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    if not cv2.imwrite(str(path), image):
        raise OSError(f"{path}: could not write image")


def write_cityscapes_layout(root: str | Path, split: str = "train", num_clips: int = 2, height: int = 128,
                            width: int = 256, seed: int = 0, num_frames: int = 30, annotated: int = CITYSCAPES_ANNOTATED,
                            label_ids: bool = True) -> list[tuple[str, str]]:
    """Write clips in the Cityscapes video layout under ``root``.

    Frames: ``leftImg8bit_sequence/<split>/<city>/<city>_<seq:06d>_<frame:06d>_leftImg8bit.png`` for
    frames 0..num_frames−1 of each snippet; labels for the annotated frame only:
    ``gtFine/<split>/<city>/<city>_<seq>_<frame>_gtFine_labelTrainIds.png`` (and ``_labelIds.png``).
    Clips alternate between two cities. Also writes the list ``<root>/<split>.txt``
    (``<frame> <label>`` per line, relative to ``root``). Returns the list entries.
    """
    root = Path(root)
    if not 0 <= annotated < num_frames:
        raise ValueError(f"annotated frame {annotated} is outside 0..{num_frames - 1}")
    entries = []
    for i in range(num_clips):
        city = ("synthville", "synthburg")[i % 2]
        seq = i // 2
        clip = render_clip(clip_seed(split, i, seed), num_frames, height, width, 19, flows=False)
        stem = f"{city}_{seq:06d}"
        for t in range(num_frames):
            frame = root / "leftImg8bit_sequence" / split / city / f"{stem}_{t:06d}_leftImg8bit.png"
            _imwrite(frame, clip["frames"][t])
        base = f"gtFine/{split}/{city}/{stem}_{annotated:06d}_gtFine_"
        _imwrite(root / f"{base}labelTrainIds.png", clip["labels"][annotated])
        if label_ids:
            _imwrite(root / f"{base}labelIds.png", TRAINID_TO_LABELID[clip["labels"][annotated]])
        entries.append((f"leftImg8bit_sequence/{split}/{city}/{stem}_{annotated:06d}_leftImg8bit.png",
                        f"{base}labelTrainIds.png"))
    write_list(root / f"{split}.txt", entries)
    return entries


def _camvid_seq(split: str, i: int) -> str:
    """CamVid-style sequence name of clip ``i`` of a split (``SYT000``, ``SYV001``, ...)."""
    return f"SY{split[0].upper()}{i:03d}"


def write_camvid_layout(root: str | Path, split: str = "train", num_clips: int = 2, height: int = 96,
                        width: int = 128, seed: int = 0, num_frames: int = 30,
                        labelled: Sequence[int] = CAMVID_LABELLED, first_number: int = 1000) -> list[tuple[str, str]]:
    """Write clips in the original CamVid video layout under ``root``.

    Every frame: ``video_image/<seq>/<seq>.avi_<number:06d>.png`` (number = first_number + index);
    labels (11 classes) for the ``labelled`` frame indices: ``11labels/<seq>_<number:06d>.png`` (the
    label shares the frame's number, like 0016E5). List ``<root>/<split>.txt``: lines
    ``video_image/... 11labels/...``. Returns the list entries.
    """
    root = Path(root)
    entries = []
    for i in range(num_clips):
        seq = _camvid_seq(split, i)
        clip = render_clip(clip_seed(split, i, seed), num_frames, height, width, 11, flows=False)
        for t in range(num_frames):
            _imwrite(root / "video_image" / seq / f"{seq}.avi_{first_number + t:06d}.png", clip["frames"][t])
        for t in labelled:
            if not 0 <= t < num_frames:
                raise ValueError(f"labelled frame {t} is outside 0..{num_frames - 1}")
            name = f"{seq}_{first_number + t:06d}.png"
            _imwrite(root / "11labels" / name, clip["labels"][t])
            entries.append((f"video_image/{seq}/{seq}.avi_{first_number + t:06d}.png", f"11labels/{name}"))
    write_list(root / f"{split}.txt", entries)
    return entries


def write_segnet_layout(root: str | Path, split: str = "train", num_clips: int = 2, height: int = 96,
                        width: int = 128, seed: int = 0, num_frames: int = 20, ext: str = "png",
                        first_number: int = 1) -> list[tuple[str, str]]:
    """Write clips in the SegNet CamVid layout under ``root``: ``<split>/<seq>_<number:05d>.<ext>``
    frames and ``<split>annot/<seq>_<number:05d>.png`` labels (11 classes), every frame labelled,
    frame numbers first_number, first_number+2, ... (a 15 Hz run of 30 Hz frame numbers, like the
    CamVid val clip). List ``<root>/<split>.txt`` in the upstream format
    (``/SegNet/CamVid/<split>/<name>.png /SegNet/CamVid/<split>annot/<name>.png``, ``.png`` even for
    JPEG frames, as JPEG copies of SegNet CamVid keep the lists). Returns the list entries.
    """
    root = Path(root)
    ext = ext.lstrip(".").lower()
    entries = []
    for i in range(num_clips):
        seq = _camvid_seq(split, i)
        clip = render_clip(clip_seed(split, i, seed), num_frames, height, width, 11, flows=False)
        for t in range(num_frames):
            name = f"{seq}_{first_number + 2 * t:05d}"
            if ext in ("jpg", "jpeg"):
                path = root / split / f"{name}.{ext}"
                path.parent.mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(path), cv2.cvtColor(clip["frames"][t], cv2.COLOR_RGB2BGR),
                            [cv2.IMWRITE_JPEG_QUALITY, 92])
            else:
                _imwrite(root / split / f"{name}.{ext}", clip["frames"][t])
            _imwrite(root / f"{split}annot" / f"{name}.png", clip["labels"][t])
            entries.append((f"/SegNet/CamVid/{split}/{name}.png", f"/SegNet/CamVid/{split}annot/{name}.png"))
    write_list(root / f"{split}.txt", entries)
    return entries
