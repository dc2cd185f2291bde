"""DAVSS: keyframe network + FlowNetS propagation of the logits *and* of the 1/4 keyframe image,
DMNet distortion map, CFNet correction, merged by the map (Zhuang et al., TCSVT 2020).

Conventions as in :mod:`model.evss`: frames are B×3×H×W RGB floats in [0, 1] (no normalisation for
DeepLab, FlowNet, CFNet and DMNet; CSRNet normalises inside); ``*_q`` tensors live on the 1/4 grid
(h = ceil(ceil(H/2)/2)); flows are (dx, dy) in 1/4-grid pixels, "where each current pixel is found
in the previous frame"; full-resolution maps are 4h×4w, predictions are cropped to H×W.

Every resize between the grids (the 1/4 images, the ×4 upsampling of logits, map and CFNet output)
is bilinear with ``align_corners`` as chosen at construction: the original evaluates Cityscapes
with False and trains (and evaluates CamVid) with True. Sizes not divisible by 4
(where the original crashes) resize to the 1/4 grid and back to 4h×4w; for divisible sizes this is
the original's scale-factor resize exactly.

The propagated state of a stream is one tensor ``carried`` = cat[logits_q, image_q] (C + 3
channels): warping it once equals warping the two apart, channel by channel.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .cfnet import CFNet
from .csrnet import CSRNet
from .deeplabv3plus import DeepLabV3Plus
from .dmnet import DMNet
from .blocks import quarter_size
from .flownet import FlowNetS
from .fusion import crop
from .stream import StreamingNet
from .warp import warp

KEYFRAME_NETWORKS = ("deeplabv3plus", "csrnet")
#: Training stages: "dmnet" (DMNet against the warping mismatch) and "correction" (FlowNet + CFNet).
STAGES = ("dmnet", "correction")


class DAVSSMerge(NamedTuple):
    """Full-resolution products of one correction step (cropped to the requested size)."""

    logits: Tensor       # B×C×H'×W' merged logits warped↑·(1 − dm↑) + cfnet↑·dm↑
    dm_up: Tensor        # B×1×H'×W' distortion map ×4
    warped_up: Tensor    # B×C×H'×W' warped logits ×4
    cfnet_up: Tensor     # B×C×H'×W' CFNet logits ×4


class DAVSS(StreamingNet):
    """The DAVSS network.

    Args:
        num_classes: 19 for Cityscapes, 11 for CamVid.
        align_corners: of every resize between the 1/4 and the full grid (see the module doc).
        keyframe: ``"deeplabv3plus"`` (the released Xception-65 DeepLabv3+, module ``deeplab``) or
            ``"csrnet"`` (this project's CSRNet, module ``csrnet``, to compare with EVSS).
        ignore_index: ignored label of the training losses.
        cfnet_loss_broadcast: reproduce the original's CFNet loss, whose per-pixel loss (N×H×W)
            times the map (N×1×H×W) broadcasts to N×N×H×W (every sample's loss against every
            sample's map). Default False: the per-sample product.

    ``forward`` is the training step of the current :attr:`stage` (so DistributedDataParallel sees
    it); inference goes through :meth:`segment_clip` or :meth:`stream`. Submodules: the keyframe
    network, ``flownet``, ``cfnet``, ``dmnet``; stage methods :meth:`keyframe`, :meth:`flow`,
    :meth:`carry`, :meth:`rectify` (DMNet + CFNet + :meth:`merge`).
    """

    def __init__(self, num_classes: int = 19, align_corners: bool = False, keyframe: str = "deeplabv3plus",
                 ignore_index: int = 255, cfnet_loss_broadcast: bool = False):
        super().__init__()
        if keyframe not in KEYFRAME_NETWORKS:
            raise ValueError(f"keyframe must be one of {KEYFRAME_NETWORKS}, got {keyframe!r}")
        self.num_classes = num_classes
        self.align_corners = bool(align_corners)
        self.keyframe_name = keyframe
        self.ignore_index = ignore_index
        self.cfnet_loss_broadcast = bool(cfnet_loss_broadcast)
        if keyframe == "deeplabv3plus":
            self.deeplab = DeepLabV3Plus(num_classes)
        else:
            self.csrnet = CSRNet(num_classes)
        self.flownet = FlowNetS()
        self.cfnet = CFNet(num_classes)
        self.dmnet = DMNet()
        self.stage = "correction"

    #: Parts a whole-net checkpoint may leave out (the original's non-strict "pretrained" file holds
    #: only the keyframe network and FlowNet); read by :func:`model.checkpoint.load_checkpoint`.
    optional_checkpoint_parts = ("cfnet", "dmnet")

    @property
    def keyframe_net(self) -> nn.Module:
        return self.deeplab if self.keyframe_name == "deeplabv3plus" else self.csrnet

    @property
    def stage(self) -> str:
        return self._stage

    @stage.setter
    def stage(self, stage: str) -> None:
        """Select the training stage: freezes (and keeps in eval mode) what that stage does not train."""
        if stage not in STAGES:
            raise ValueError(f"stage must be one of {STAGES}, got {stage!r}")
        self._stage = stage
        trained = ("dmnet",) if stage == "dmnet" else ("flownet", "cfnet")
        for name in ("keyframe_net", "flownet", "cfnet", "dmnet"):
            getattr(self, name).requires_grad_(name in trained)
        self.train(self.training)

    def frozen_parts(self) -> list[nn.Module]:
        """The submodules the current stage keeps frozen and in eval mode."""
        if self._stage == "dmnet":
            return [self.keyframe_net, self.flownet, self.cfnet]
        return [self.keyframe_net, self.dmnet]

    def train(self, mode: bool = True) -> "DAVSS":
        super().train(mode)
        for part in self.frozen_parts():
            part.eval()
        return self

    # ---------------------------------------------------------------- resizes and stages
    def resize(self, x: Tensor, size: Sequence[int]) -> Tensor:
        """Bilinear resize with this net's ``align_corners``."""
        return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=self.align_corners)

    def upsample(self, x_q: Tensor) -> Tensor:
        """1/4 grid → full grid (×4)."""
        return self.resize(x_q, (4 * x_q.shape[-2], 4 * x_q.shape[-1]))

    def downsample(self, frame: Tensor) -> Tensor:
        """A frame on the 1/4 grid (the image DMNet compares)."""
        return self.resize(frame, quarter_size(frame.shape[-2:]))

    def keyframe(self, frame: Tensor) -> Tensor:
        """Keyframe-network logits B×C×h×w."""
        return self.keyframe_net(frame)

    def flow(self, current: Tensor, previous: Tensor) -> Tensor:
        """FlowNet flow B×2×h×w from ``current`` back to ``previous``."""
        return self.flownet(torch.cat([current, previous], 1))

    def carry(self, frame: Tensor, logits_q: Tensor) -> Tensor:
        """The state a keyframe starts: cat[logits_q, frame on the 1/4 grid], B×(C+3)×h×w."""
        return torch.cat([logits_q, self.downsample(frame)], 1)

    def carried_logits(self, carried: Tensor) -> Tensor:
        """The (warped) logits part of a carried state."""
        return carried[:, :self.num_classes]

    def keyframe_classes(self, logits_q: Tensor) -> None:
        """DAVSS's correction needs nothing of the keyframe but the carried state."""
        return None

    def keyframe_outputs(self, frame: Tensor, logits_q: Tensor, carried: Tensor) -> dict:
        """``logits`` (×4) and ``key_image``, the keyframe on the 1/4 grid (B×3×h×w)."""
        return {"logits": self.upsample(logits_q), "key_image": carried[:, self.num_classes:]}

    def merge(self, warped_q: Tensor, cfnet_q: Tensor, dm_q: Tensor, size: Sequence[int] | None = None) -> DAVSSMerge:
        """``warped↑·(1 − dm↑) + cfnet↑·dm↑`` at full resolution (cropped to ``size``), as the original."""
        size = None if size is None else tuple(size)
        warped_up = crop(self.upsample(warped_q), size)
        cfnet_up = crop(self.upsample(cfnet_q), size)
        dm_up = crop(self.upsample(dm_q), size)
        return DAVSSMerge(warped_up * (1 - dm_up) + cfnet_up * dm_up, dm_up, warped_up, cfnet_up)

    def rectify(self, frame: Tensor, carried: Tensor, key_pred_q: Tensor | None = None, wf: float | None = None) -> dict:
        """Correct the carried state at ``frame``: DMNet map, CFNet logits, merge.

        ``key_pred_q`` and ``wf`` are accepted for the EVSS interface and unused. Returns
        ``warped`` (B×C×h×w), ``warped_image``, ``current_image`` (B×3×h×w), ``dm`` (B×1×h×w),
        ``cfnet`` (B×C×h×w), ``dm_up`` (B×1×4h×4w) and ``logits`` (B×C×4h×4w, merged).
        """
        warped_q, warped_image_q = carried[:, :self.num_classes], carried[:, self.num_classes:]
        current_image_q = self.downsample(frame)
        dm_q = self.dmnet(warped_image_q, current_image_q)
        cfnet_q = self.cfnet(frame)
        merged = self.merge(warped_q, cfnet_q, dm_q)
        return {"warped": warped_q, "warped_image": warped_image_q, "current_image": current_image_q, "dm": dm_q,
                "cfnet": cfnet_q, "dm_up": merged.dm_up, "logits": merged.logits}

    def distortion_q(self, out: dict, wf: float | None = None) -> Tensor:
        """The DMNet map (B×1×h×w); ``wf`` is accepted for the EVSS interface and unused."""
        return out["dm"]

    # ---------------------------------------------------------------- inference
    @torch.no_grad()
    def segment_clip(self, frames: Sequence[Tensor]) -> dict:
        """Segment ``frames[-1]`` from the keyframe ``frames[0]`` (the original's PDA path).

        Logits and the 1/4 keyframe image are warped along every consecutive flow (chained) and
        corrected once at the target. Returns ``logits`` (B×C×4h×4w), ``pred`` (B×H×W int64),
        ``key_logits``, ``key_image`` (B×3×h×w), and for a non-keyframe also per step ``flows``,
        ``warped``, ``warped_images``, and ``current_image``, ``dm``, ``dm_up``, ``cfnet``.
        """
        if len(frames) == 0:
            raise ValueError("segment_clip needs at least one frame (the keyframe)")
        stream = self.stream()
        out = stream.step(frames[0], keyframe=True)
        key_logits, key_image = out["key_logits"], out["key_image"]
        if len(frames) == 1:
            return out
        flows, carried = [], []
        for frame in frames[1:-1]:
            flows.append(stream.propagate(frame))
            carried.append(stream.carried)
        out = stream.step(frames[-1])
        flows.append(out.pop("flow"))
        carried.append(stream.carried)
        out.update(key_logits=key_logits, key_image=key_image, flows=flows,
                   warped=[self.carried_logits(c) for c in carried],
                   warped_images=[c[:, self.num_classes:] for c in carried])
        return out

    # ---------------------------------------------------------------- training
    def _pseudo_label(self, frame: Tensor, size: tuple[int, int]) -> Tensor:
        return crop(self.upsample(self.keyframe(frame)), size).argmax(1)

    def forward(self, frames: Tensor, label: Tensor | None = None) -> dict:
        """The training step of :attr:`stage` on samples [img_1, img_2, img_3].

        Args:
            frames: B×3×3×H×W: keyframe t − j, intermediate t − k, labelled frame t.
            label: B×H×W int64 ground truth of img_3 (``ignore_index`` ignored); needed by the
                correction stage only.

        Stage ``dmnet`` returns ``loss`` (= ``loss_dmnet``, the mean of the two steps' BCE), ``dm``
        and ``dm_target`` (per step, B×1×h×w and B×H×W), ``flows``. Stage ``correction`` returns
        ``loss_semantic``, ``loss_cfnet``, ``loss`` (their sum), ``dm``, ``cfnet`` (per step, 1/4
        grid), ``flows``, ``pseudo_label`` (img_2's).
        """
        if frames.dim() != 5 or frames.shape[1] != 3:
            raise ValueError(f"frames must be B×3×3×H×W [img_1, img_2, img_3], got {tuple(frames.shape)}")
        if self._stage == "dmnet":
            return self._dmnet_step(frames)
        if label is None:
            raise ValueError("the correction stage needs the label of img_3")
        return self._correction_step(frames, label)

    def _dmnet_step(self, frames: Tensor) -> dict:
        img1, img2, img3 = frames.unbind(1)
        size = tuple(img3.shape[-2:])
        with torch.no_grad():
            features = self.keyframe(img1)
            pseudo = [self._pseudo_label(img2, size), self._pseudo_label(img3, size)]
            flows = [self.flow(img2, img1), self.flow(img3, img2)]
        image_q = self.downsample(img1)
        losses, dms, targets = [], [], []
        for current, flow, pseudo_label in zip((img2, img3), flows, pseudo):
            with torch.no_grad():
                features = warp(features, flow)
                image_q = warp(image_q, flow)
                target = (crop(self.upsample(features), size).argmax(1) != pseudo_label).to(frames.dtype)
            dm_q = self.dmnet(image_q, self.downsample(current))
            dm_up = crop(self.upsample(dm_q), size)
            losses.append(F.binary_cross_entropy(dm_up[:, 0], target))
            dms.append(dm_q)
            targets.append(target)
        loss = (losses[0] + losses[1]) / 2
        return {"loss": loss, "loss_dmnet": loss, "dm": dms, "dm_target": targets, "flows": flows}

    def _cfnet_loss(self, cfnet_up: Tensor, target: Tensor, dm_up: Tensor) -> Tensor:
        per_pixel = F.cross_entropy(cfnet_up, target, ignore_index=self.ignore_index, reduction="none")
        if self.cfnet_loss_broadcast:
            return (per_pixel * dm_up).mean()          # N×H×W · N×1×H×W → N×N×H×W, as the original
        return (per_pixel * dm_up[:, 0]).mean()

    def _correction_step(self, frames: Tensor, label: Tensor) -> dict:
        img1, img2, img3 = frames.unbind(1)
        size = tuple(img3.shape[-2:])
        with torch.no_grad():
            features = self.keyframe(img1)
            pseudo_label = self._pseudo_label(img2, size)
        image_q = self.downsample(img1)
        semantic, cfnet_losses, flows, dms, cfnets = [], [], [], [], []
        previous = img1
        for current, target in ((img2, pseudo_label), (img3, label)):
            flow = self.flow(current, previous)
            features = warp(features, flow)
            image_q = warp(image_q, flow)
            dm_q = self.dmnet(image_q, self.downsample(current))
            cfnet_q = self.cfnet(current)
            merged = self.merge(features, cfnet_q, dm_q, size)
            semantic += [F.cross_entropy(merged.warped_up, target, ignore_index=self.ignore_index),
                         F.cross_entropy(merged.logits, target, ignore_index=self.ignore_index)]
            cfnet_losses.append(self._cfnet_loss(merged.cfnet_up, target, merged.dm_up))
            flows.append(flow)
            dms.append(dm_q)
            cfnets.append(cfnet_q)
            previous = current
        loss_semantic = (semantic[0] + semantic[1] + semantic[2] + semantic[3]) / 4
        loss_cfnet = (cfnet_losses[0] + cfnet_losses[1]) / 2
        return {"loss": loss_semantic + loss_cfnet, "loss_semantic": loss_semantic, "loss_cfnet": loss_cfnet,
                "dm": dms, "cfnet": cfnets, "flows": flows, "pseudo_label": pseudo_label}

