"""Optical-flow sources for evaluation (temporal-consistency measures, diagnostics) and for the
frozen flows of training losses; :func:`make_flow_estimator` builds any of them by name.

Every estimator is called as ``estimator(current, previous)`` with two RGB frames
``B×3×H×W`` float in [0, 1] and returns the **backward** flow ``current→previous``:
``B×2×H×W`` float32, channels (dx, dy) in pixels of the input resolution, such that pixel
``(x, y)`` of ``current`` is found at ``(x + dx, y + dy)`` in ``previous``.  The result is on
the device of the inputs.  ``name`` (short) and ``description`` (one line) say where the flow
comes from, so reports can print them next to every number.

To get ``flow_t→t+1`` (what the ETC measure warps with) call ``estimator(frame_t, frame_t+1)``:
the first argument is always the frame on whose pixel grid the flow is defined.
"""

from __future__ import annotations

import abc
from typing import Callable, Dict, Optional

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from model import FlowNetS, load_checkpoint
from model.checkpoint import read_state_dict

from .config import ConfigError

__all__ = ["FLOW_SOURCES", "FlowEstimator", "ModelFlow", "OpenCVFlow", "ZeroFlow", "load_flownet",
           "make_flow_estimator", "to_gray_uint8"]

#: Flow sources of :func:`make_flow_estimator`.
FLOW_SOURCES = ("model", "flownet", "dis", "farneback", "zero")


def to_gray_uint8(frame: Tensor) -> np.ndarray:
    """3×H×W RGB float in [0, 1] → H×W uint8 grey (ITU-R BT.601 weights, as cv2.COLOR_RGB2GRAY)."""
    rgb = (frame.detach().float().clamp(0, 1) * 255.0).round().to(torch.uint8)
    rgb = rgb.permute(1, 2, 0).contiguous().cpu().numpy()
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)


class FlowEstimator(abc.ABC):
    """Interface: ``__call__(current, previous) -> flow current→previous`` (see module doc)."""

    @property
    @abc.abstractmethod
    def name(self) -> str:
        """Short identifier, e.g. ``"opencv-dis-medium"``."""

    @property
    def description(self) -> str:
        """One-line human-readable description of the flow source."""
        return self.name

    @abc.abstractmethod
    def estimate(self, current: Tensor, previous: Tensor) -> Tensor:
        """Compute the flow; inputs are validated B×3×H×W tensors."""

    def __call__(self, current: Tensor, previous: Tensor) -> Tensor:
        for what, x in (("current", current), ("previous", previous)):
            if not isinstance(x, Tensor) or x.dim() != 4 or x.shape[1] != 3:
                shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
                raise ValueError(f"{what} frame must be a B×3×H×W tensor, got {shape}")
        if current.shape != previous.shape:
            raise ValueError(
                f"current shape {tuple(current.shape)} does not match previous shape "
                f"{tuple(previous.shape)}"
            )
        flow = self.estimate(current, previous)
        b, _, h, w = current.shape
        if tuple(flow.shape) != (b, 2, h, w):
            raise RuntimeError(
                f"{self.name} returned flow of shape {tuple(flow.shape)}, expected {(b, 2, h, w)}"
            )
        return flow.to(device=current.device, dtype=torch.float32)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.description})"


class OpenCVFlow(FlowEstimator):
    """Classical flow from OpenCV, independent of the model being evaluated.

    * ``method="dis"``: ``cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)``
      (``preset`` may be "ultrafast", "fast" or "medium").
    * ``method="farneback"``: ``cv2.calcOpticalFlowFarneback`` with ``pyr_scale=0.5,
      levels=5, winsize=15, iterations=3, poly_n=5, poly_sigma=1.2, flags=0`` (override with
      ``farneback_params``).

    Both run on the CPU on 8-bit greyscale images (RGB → grey with BT.601 weights) with the
    current frame as the first image, so ``current(x) ≈ previous(x + flow(x))``.
    """

    _PRESETS = {"ultrafast": "DISOPTICAL_FLOW_PRESET_ULTRAFAST",
                "fast": "DISOPTICAL_FLOW_PRESET_FAST",
                "medium": "DISOPTICAL_FLOW_PRESET_MEDIUM"}
    _FARNEBACK_DEFAULTS = dict(pyr_scale=0.5, levels=5, winsize=15, iterations=3,
                               poly_n=5, poly_sigma=1.2, flags=0)

    def __init__(self, method: str = "dis", preset: str = "medium",
                 farneback_params: Optional[Dict[str, float]] = None) -> None:
        method = method.lower()
        if method not in ("dis", "farneback"):
            raise ValueError(f"method must be 'dis' or 'farneback', got {method!r}")
        if preset not in self._PRESETS:
            raise ValueError(f"preset must be one of {sorted(self._PRESETS)}, got {preset!r}")
        self.method = method
        self.preset = preset
        self.farneback_params = dict(self._FARNEBACK_DEFAULTS)
        if farneback_params:
            unknown = set(farneback_params) - set(self._FARNEBACK_DEFAULTS)
            if unknown:
                raise ValueError(f"unknown Farneback parameters: {sorted(unknown)}")
            self.farneback_params.update(farneback_params)
        self._dis = None  # created lazily: cv2 objects do not pickle (DataLoader workers)

    @property
    def name(self) -> str:
        return f"opencv-dis-{self.preset}" if self.method == "dis" else "opencv-farneback"

    @property
    def description(self) -> str:
        if self.method == "dis":
            return f"OpenCV {cv2.__version__} DIS optical flow, preset {self.preset}, greyscale"
        params = ", ".join(f"{k}={v}" for k, v in self.farneback_params.items())
        return f"OpenCV {cv2.__version__} Farneback optical flow ({params}), greyscale"

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_dis"] = None
        return state

    def _flow_pair(self, cur: np.ndarray, prev: np.ndarray) -> np.ndarray:
        if self.method == "dis":
            if self._dis is None:
                self._dis = cv2.DISOpticalFlow_create(getattr(cv2, self._PRESETS[self.preset]))
            return self._dis.calc(cur, prev, None)
        p = self.farneback_params
        return cv2.calcOpticalFlowFarneback(
            cur, prev, None, p["pyr_scale"], int(p["levels"]), int(p["winsize"]),
            int(p["iterations"]), int(p["poly_n"]), p["poly_sigma"], int(p["flags"]))

    def estimate(self, current: Tensor, previous: Tensor) -> Tensor:
        flows = []
        for cur, prev in zip(current, previous):
            f = self._flow_pair(to_gray_uint8(cur), to_gray_uint8(prev))  # H×W×2, (dx, dy)
            flows.append(torch.from_numpy(np.ascontiguousarray(f, dtype=np.float32)).permute(2, 0, 1))
        return torch.stack(flows).to(current.device)


class ModelFlow(FlowEstimator):
    """Wrap a flow network whose output lives on a 1/``scale`` grid (the project's FlowNet).

    The network is called without gradients as ``flownet(torch.cat([current, previous], 1))``
    (``input_mode="concat"``, the original's FlowNet input: raw [0, 1] RGB, current first) or
    ``flownet(current, previous)`` (``input_mode="pair"``); a tuple/list output uses its first
    element.  The output ``b×2×h×w`` is in pixels of its own grid and follows the same
    convention (current→previous).  When ``(h, w) * scale == (H, W)`` it is upsampled ×scale
    bilinearly (align_corners=False) and multiplied by ``scale``; otherwise (e.g. odd sizes,
    where the grid is ceil-divided) it is resized to (H, W) and dx, dy are multiplied by W/w and
    H/h.  The network's train/eval mode is left as it is (call ``.eval()`` yourself).
    """

    def __init__(self, flownet: Callable[..., Tensor], scale: int = 4, input_mode: str = "concat",
                 name: Optional[str] = None) -> None:
        if input_mode not in ("concat", "pair"):
            raise ValueError(f"input_mode must be 'concat' or 'pair', got {input_mode!r}")
        if int(scale) < 1:
            raise ValueError(f"scale must be a positive integer, got {scale}")
        self.flownet = flownet
        self.scale = int(scale)
        self.input_mode = input_mode
        self._name = name

    @property
    def name(self) -> str:
        return self._name or f"model-{type(self.flownet).__name__.lower()}"

    @property
    def description(self) -> str:
        return (f"{type(self.flownet).__name__} network flow on a 1/{self.scale} grid, "
                f"bilinear ×{self.scale} upsampling")

    def estimate(self, current: Tensor, previous: Tensor) -> Tensor:
        with torch.no_grad():
            if self.input_mode == "concat":
                out = self.flownet(torch.cat([current, previous], dim=1))
            else:
                out = self.flownet(current, previous)
        if isinstance(out, (tuple, list)):
            out = out[0]
        if not isinstance(out, Tensor) or out.dim() != 4 or out.shape[1] != 2:
            shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise RuntimeError(f"flow network returned {shape}, expected B×2×h×w")
        out = out.float()
        H, W = current.shape[-2:]
        h, w = out.shape[-2:]
        if (h * self.scale, w * self.scale) == (H, W):
            return F.interpolate(out, scale_factor=self.scale, mode="bilinear",
                                 align_corners=False) * self.scale
        up = F.interpolate(out, size=(H, W), mode="bilinear", align_corners=False)
        factor = torch.tensor([W / w, H / h], dtype=up.dtype, device=up.device).view(1, 2, 1, 1)
        return up * factor


class ZeroFlow(FlowEstimator):
    """No motion: the identity warp (the baseline of every warping error)."""

    @property
    def name(self) -> str:
        return "zero"

    @property
    def description(self) -> str:
        return "zero flow (no warping)"

    def estimate(self, current: Tensor, previous: Tensor) -> Tensor:
        b, _, h, w = current.shape
        return current.new_zeros(b, 2, h, w)


def load_flownet(path: str, device: str | torch.device = "cpu") -> FlowNetS:
    """A frozen FlowNetS in eval mode from a stage-1b checkpoint, a FlowNet-only checkpoint or a whole
    EVSS one (its ``flownet.`` part)."""
    net = FlowNetS().to(device)
    state = read_state_dict(path, map_location=device)
    if any(k.startswith("flownet.") for k in state):
        state = {k[len("flownet."):]: v for k, v in state.items() if k.startswith("flownet.")}
    load_checkpoint(net, state)
    return net.eval().requires_grad_(False)


def make_flow_estimator(source: str, net: Optional[nn.Module] = None, preset: str = "medium",
                        flownet_checkpoint: Optional[str] = None, name: Optional[str] = None,
                        device: str | torch.device = "cpu") -> FlowEstimator:
    """The flow estimator named ``source`` (one of :data:`FLOW_SOURCES`), returning full-resolution
    flow ``current→previous`` in pixels (see the module doc).

    * ``"model"``: ``net.flownet`` (the evaluated net's own FlowNet, 1/4 grid, ×4 upsampled);
    * ``"flownet"``: a frozen :class:`model.FlowNetS` loaded from ``flownet_checkpoint`` onto
      ``device`` (:func:`load_flownet`), reported as ``name`` (default ``"flownet"``);
    * ``"dis"`` (DIS with ``preset``) or ``"farneback"``: OpenCV, independent of any network;
    * ``"zero"``: no motion.

    Raises :class:`engine.config.ConfigError` (a ValueError) for an unknown source or a missing
    network / checkpoint.
    """
    if source == "model":
        if net is None:
            raise ConfigError("flow source 'model' needs the network")
        return ModelFlow(net.flownet, scale=4, name="model-flownet")
    if source == "flownet":
        if not flownet_checkpoint:
            raise ConfigError("flow source 'flownet' needs a FlowNet checkpoint (flownet_checkpoint=PATH: a "
                              "stage-1b FlowNet or released checkpoint); or use the flow source 'dis'")
        return ModelFlow(load_flownet(flownet_checkpoint, device), scale=4, name=name or "flownet")
    if source in ("dis", "farneback"):
        return OpenCVFlow(source, preset=preset)
    if source == "zero":
        return ZeroFlow()
    raise ConfigError(f"flow source must be one of {', '.join(FLOW_SOURCES)}, got {source!r}")
