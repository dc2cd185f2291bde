"""EVSS: keyframe CSRNet + FlowNetS propagation + CoNet rectification, guided by distortion maps.

Conventions: frames are B×3×H×W RGB floats in [0, 1]; ``*_q`` tensors live on the 1/4 grid
(h = ceil(ceil(H/2)/2)); flows are (dx, dy) in 1/4-grid pixels, "where each current pixel is
found in the previous frame". Full-resolution outputs are 4h×4w (H×W when both divide by 4);
predictions are cropped to H×W.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from .conet import CoNet
from .csrnet import CSRNet
from .flownet import FlowNetS
from .blocks import upsample4
from .fusion import coarse_distortion, crop, fuse, merge_argmax, upsample_argmax
from .losses import LOSS_WEIGHTS, EVSSLosses, edge_loss, edge_semantic_loss
from .stream import StreamingNet
from .warp import warp

DEFAULT_WF = 0.2
#: Weight of the coarse map in the fine map during training (hard-coded 0.8/0.2 in the original).
TRAIN_WF = 0.2

CorrectionNet = Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]


def rectify_logits(conet: CorrectionNet, frame: Tensor, warped_q: Tensor, key_classes_q: Tensor, wf: float) -> dict:
    """EVSS's correction of warped logits at ``frame``: CoNet, coarse and fine distortion maps, merge.

    ``conet(frame, warped_q) -> (edge, update)``. Returns ``edge`` (B×2×h×w), ``update`` (B×C×h×w),
    ``dm_coarse`` (B×1×h×w), ``dm_fine`` (B×1×4h×4w) and ``logits`` (B×C×4h×4w, merged).
    """
    dm_coarse = coarse_distortion(key_classes_q, warped_q)
    edge, update = conet(frame, warped_q)
    fused = fuse(warped_q, update, edge, dm_coarse, wf)
    return {"edge": edge, "update": update, "dm_coarse": dm_coarse, "dm_fine": fused.dm_fine, "logits": fused.logits}


def rectify_pred(conet: CorrectionNet, frame: Tensor, warped_q: Tensor, key_classes_q: Tensor, wf: float,
                 size: tuple[int, int]) -> dict:
    """:func:`rectify_logits`'s prediction (B×H×W) through the fused merge-argmax operator, which never
    materialises the full-resolution maps; returns ``pred``, ``edge``, ``update`` and ``dm_coarse``."""
    dm_coarse = coarse_distortion(key_classes_q, warped_q)
    edge, update = conet(frame, warped_q)
    pred = merge_argmax(warped_q, update, edge, dm_coarse, wf, size)
    return {"edge": edge, "update": update, "dm_coarse": dm_coarse, "pred": pred}


class EVSSCorrection(StreamingNet):
    """EVSS's correction stages for a net with ``conet(frame, warped_q) -> (edge, update)`` and a default
    coarse-map weight ``wf``: the reference :class:`EVSS` and the inference-optimised copy share them."""

    wf: float
    conet: CorrectionNet

    def rectify(self, frame: Tensor, warped_q: Tensor, key_classes_q: Tensor, wf: float | None = None) -> dict:
        """Correct warped logits at ``frame`` (:func:`rectify_logits`; ``wf`` None: ``self.wf``)."""
        return rectify_logits(self.conet, frame, warped_q, key_classes_q, self.wf if wf is None else wf)

    def rectify_pred(self, frame: Tensor, warped_q: Tensor, key_classes_q: Tensor, wf: float | None,
                     size: tuple[int, int]) -> dict:
        """The prediction through the fused merge-argmax operator (:func:`rectify_pred`)."""
        return rectify_pred(self.conet, frame, warped_q, key_classes_q, self.wf if wf is None else wf, size)

    def keyframe_pred(self, logits_q: Tensor, size: tuple[int, int]) -> dict:
        """The keyframe's prediction through the fused upsample-argmax operator."""
        return {"pred": upsample_argmax(logits_q, size)}

    def distortion_q(self, out: dict, wf: float | None = None) -> Tensor:
        """The fine distortion map on the 1/4 grid, ``(1 − wf)·softmax(edge)[edge] + wf·dm_coarse``
        (what ``dm_fine`` is at full resolution, before the ×4 upsampling)."""
        wf = self.wf if wf is None else wf
        return (1 - wf) * torch.softmax(out["edge"].float(), 1)[:, 1:2] + wf * out["dm_coarse"].float()


class EVSS(EVSSCorrection):
    """The EVSS network.

    Args:
        num_classes: 19 for Cityscapes, 11 for CamVid.
        pretrained_backbone: load torchvision's ImageNet ResNet-18 weights into CSRNet's encoder
            from the local cache (never downloads; logs a warning when they are absent).
        wf: default weight of the coarse distortion map at inference.
        loss_weights: (warp, semantic, edge, edge_semantic) weights of the training loss.
        ignore_index: ignored label of the semantic losses (255 Cityscapes, 11 CamVid).

    ``forward`` is the stage-2 training step (so DistributedDataParallel sees it); inference goes
    through :meth:`segment_clip` or :meth:`stream` (``pred_only=True``: prediction through the fused
    merge-argmax operator, no full-resolution logits; for BN folding, ``channels_last`` and Winograd as
    well, see :func:`model.inference.optimize_for_inference`). CSRNet is frozen and kept in eval mode while
    ``freeze_keyframe`` is True (the original's stage 2).
    """

    def __init__(self, num_classes: int = 19, pretrained_backbone: bool = False, wf: float = DEFAULT_WF,
                 loss_weights: Sequence[float] = LOSS_WEIGHTS, ignore_index: int = 255):
        super().__init__()
        self.num_classes = num_classes
        self.wf = wf
        self.loss_weights = tuple(loss_weights)
        self.ignore_index = ignore_index
        self.csrnet = CSRNet(num_classes, pretrained_backbone)
        self.flownet = FlowNetS()
        self.conet = CoNet(num_classes)
        self.freeze_keyframe = True

    @property
    def freeze_keyframe(self) -> bool:
        return self._freeze_keyframe

    @freeze_keyframe.setter
    def freeze_keyframe(self, frozen: bool) -> None:
        self._freeze_keyframe = frozen
        self.csrnet.requires_grad_(not frozen)
        if frozen:
            self.csrnet.eval()

    def train(self, mode: bool = True) -> "EVSS":
        super().train(mode)
        if self._freeze_keyframe:
            self.csrnet.eval()
        return self

    # ---------------------------------------------------------------- the three stages of a step
    def keyframe(self, frame: Tensor) -> Tensor:
        """CSRNet logits of a keyframe, B×C×h×w."""
        return self.csrnet(frame)

    def flow(self, current: Tensor, previous: Tensor) -> Tensor:
        """FlowNet flow B×2×h×w from ``current`` back to ``previous``."""
        return self.flownet(torch.cat([current, previous], 1))

    # ---------------------------------------------------------------- inference
    @torch.no_grad()
    def segment_clip(self, frames: Sequence[Tensor], wf: float | None = None) -> dict:
        """Segment ``frames[-1]`` from the keyframe ``frames[0]``, as the original validation path.

        Features are warped along every consecutive flow (chained, no correction in between) and
        rectified once at the target. Returns ``logits`` (B×C×4h×4w), ``pred`` (B×H×W, int64),
        ``key_logits``, and for a non-keyframe also ``flows`` and ``warped`` (one per step), ``edge``,
        ``update``, ``dm_coarse`` and ``dm_fine``. ``segment_clip([key])`` is the keyframe's own
        segmentation.
        """
        if len(frames) == 0:
            raise ValueError("segment_clip needs at least one frame (the keyframe)")
        stream = self.stream(wf)
        out = stream.step(frames[0], keyframe=True)
        key_logits = out["key_logits"]
        if len(frames) == 1:
            return out
        flows, warped = [], []
        for frame in frames[1:-1]:  # intermediate frames are only propagated, as in the original
            flows.append(stream.propagate(frame))
            warped.append(stream.carried)
        out = stream.step(frames[-1])
        flows.append(out.pop("flow"))
        warped.append(out["warped"])
        out.update(key_logits=key_logits, flows=flows, warped=warped)
        return out

    # ---------------------------------------------------------------- training (stage 2)
    def forward(self, frames: Tensor, edge_label: Tensor) -> dict:
        """Stage-2 training step on pairs, exactly as the original's forward.

        Args:
            frames: B×2×3×H×W, [neighbour, labelled frame] per sample.
            edge_label: B×H×W int64 in {0, 1} (255 ignored), the labelled frame's edge label.

        Returns the four unweighted losses (``loss_warp``, ``loss_semantic``, ``loss_edge``,
        ``loss_edge_semantic``), their weighted sum ``loss``, and ``flow``, ``edge_logits`` (1/4 grid)
        and ``pseudo_label`` (B×H×W) for inspection.
        """
        if frames.dim() != 5 or frames.shape[1] != 2:
            raise ValueError(f"frames must be B×2×3×H×W [neighbour, labelled], got {tuple(frames.shape)}")
        neighbour, labelled = frames[:, 0], frames[:, 1]
        size = tuple(labelled.shape[-2:])
        with torch.no_grad():
            key_logits = self.csrnet(neighbour)
            pseudo_label = crop(upsample4(self.csrnet(labelled)), size).argmax(1)
        flow = self.flow(labelled, neighbour)
        warped = warp(key_logits, flow)
        dm_coarse = coarse_distortion(key_logits.argmax(1, keepdim=True), warped).detach()
        edge, update = self.conet(labelled, warped)
        fused = fuse(warped, update, edge, dm_coarse, TRAIN_WF, size)
        losses = EVSSLosses(
            warp=F.cross_entropy(fused.warped_up, pseudo_label, ignore_index=self.ignore_index),
            semantic=F.cross_entropy(fused.logits, pseudo_label, ignore_index=self.ignore_index),
            edge=edge_loss(fused.edge_up, edge_label),
            edge_semantic=edge_semantic_loss(fused.update_up, fused.edge_up, pseudo_label),
        )
        return {**{f"loss_{k}": v for k, v in losses._asdict().items()}, "loss": losses.total(self.loss_weights),
                "flow": flow, "edge_logits": edge, "pseudo_label": pseudo_label}

