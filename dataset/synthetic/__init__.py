"""Synthetic driving video with exact labels and exact optical flow: the embedded default data set.

Each clip is a random 3-D street scene (:mod:`.scene`) seen by a camera driving along it
(:mod:`.camera`), ray-cast (:mod:`.raycast`) and shaded (:mod:`.shading`, :mod:`.materials`) frame by
frame (:mod:`.render`). Since every pixel's scene point is known, the flow between any two frames
and the occlusion masks are exact (:mod:`.flow`). Labels are Cityscapes trainIds, mapped to the 11
CamVid classes on request (:mod:`.classes`); every pixel gets a class, no ignore values.
:class:`SyntheticVideoDataset` serves the clips as training pairs or evaluation windows;
:mod:`.export` writes them in the real data sets' layouts; ``python -m dataset.synthetic`` is the
command line (:mod:`.cli`).
"""

from .classes import TRAINID_TO_CAMVID, TRAINID_TO_LABELID
from .dataset import SyntheticVideoDataset
from .export import write_camvid_layout, write_cityscapes_layout, write_segnet_layout
from .preview import flow_to_color, save_preview
from .render import render_clip, render_flow
from .splits import clip_seed

__all__ = [
    "TRAINID_TO_CAMVID",
    "TRAINID_TO_LABELID",
    "SyntheticVideoDataset",
    "clip_seed",
    "flow_to_color",
    "render_clip",
    "render_flow",
    "save_preview",
    "write_camvid_layout",
    "write_cityscapes_layout",
    "write_segnet_layout",
]
