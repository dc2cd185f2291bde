"""CSRNet, the keyframe segmentation network: ResNet-18 encoder, SPP, SK decoder, logits at 1/4.

Parameter names are those of the released checkpoints' ``csrnet.*`` entries; the encoder's
(``conv1``, ``bn1``, ``layer1``..``layer4``) are also torchvision's, so ImageNet weights load as-is.
"""
from __future__ import annotations

import logging
import os

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .blocks import ConvNormAct, ImageNormalize, UpsampleSK, relu, resize
from .checkpoint import load_file
from .errors import CheckpointError

log = logging.getLogger(__name__)

#: File names of torchvision's ResNet-18 ImageNet weights, newest first.
RESNET18_IMAGENET_FILES = ("resnet18-f37072fd.pth", "resnet18-5c106cde.pth")


class BasicBlock(nn.Module):
    """ResNet basic block; returns the post-ReLU output (the original's skip feature is that too)."""

    def __init__(self, cin: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or cin != planes:
            self.downsample = nn.Sequential(nn.Conv2d(cin, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x: Tensor) -> Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + shortcut)


class SpatialPyramidPooling(nn.Module):
    """SwiftNet SPP: a 1×1 bottleneck, three pooled levels (grids 8, 4, 2 rows, columns by the
    aspect ratio), resized back and fused by a 1×1 unit. Modules live under ``spp`` as released."""

    GRIDS = (8, 4, 2)

    def __init__(self, cin: int, bottleneck: int = 128, level: int = 42, out: int = 128):
        super().__init__()
        self.spp = nn.Sequential()
        self.spp.add_module("spp_bn", ConvNormAct(cin, bottleneck, 1, relu, bn_momentum=0.005))
        for i in range(len(self.GRIDS)):
            self.spp.add_module(f"spp{i}", ConvNormAct(bottleneck, level, 1, relu, bn_momentum=0.005))
        self.spp.add_module("spp_fuse", ConvNormAct(bottleneck + len(self.GRIDS) * level, out, 1, relu,
                                                    bn_momentum=0.005))

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        x = self.spp.spp_bn(x)
        levels = [x]
        for grid, unit in zip(self.GRIDS, list(self.spp)[1:-1]):
            # Python's round (half to even), as the original computes the pooled grid.
            pooled = F.adaptive_avg_pool2d(x, (grid, max(1, round(w / h * grid))))
            levels.append(resize(unit(pooled), (h, w)))
        return self.spp.spp_fuse(torch.cat(levels, 1))


class CSRNetBackbone(nn.Module):
    """ResNet-18 encoder plus the three-pass SPP/SK decoder; returns 128 channels at 1/4 resolution."""

    def __init__(self, features: int = 128):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        widths = (64, 128, 256, 512)
        cin = 64
        for i, (planes, stride) in enumerate(zip(widths, (1, 2, 2, 2)), start=1):
            self.add_module(f"layer{i}", nn.Sequential(BasicBlock(cin, planes, stride), BasicBlock(planes, planes)))
            cin = planes
        self.spp = SpatialPyramidPooling(512, out=features)
        self.spp_up1 = SpatialPyramidPooling(features, out=features)
        self.spp_up2 = SpatialPyramidPooling(features, out=features)
        self.upsample = nn.ModuleList(UpsampleSK(features, skip, features, relu) for skip in (256, 128, 64))
        self.upsample_up2 = nn.ModuleList(UpsampleSK(features, features, features, relu) for _ in range(2))
        self.upsample_up3 = nn.ModuleList([UpsampleSK(features, features, features, relu)])

    def forward(self, x: Tensor) -> Tensor:
        return self.decode(*self.encode(x))

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """The ResNet-18 encoder: features at 1/4, 1/8, 1/16 and 1/32 (64, 128, 256, 512 channels)."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        s4 = self.layer1(x)
        s8 = self.layer2(s4)
        s16 = self.layer3(s8)
        return s4, s8, s16, self.layer4(s16)

    def decode(self, s4: Tensor, s8: Tensor, s16: Tensor, s32: Tensor) -> Tensor:
        """The SPP/SK decoder on the encoder's features: 128 channels at 1/4 resolution.

        Intermediate maps are dropped at their last use (the 1/4-grid ones are 64 MB each at 1024×2048).
        """
        a16 = self.upsample[0](self.spp(s32), s16)
        a8 = self.upsample[1](a16, s8)
        a4 = self.upsample[2](a8, s4)
        b8 = self.upsample_up2[0](self.spp_up1(a16), a8)
        del a16, a8
        b4 = self.upsample_up2[1](b8, a4)
        del a4
        return self.upsample_up3[0](self.spp_up2(b8), b4)


class LogitsHead(nn.Sequential):
    """Pre-activation head: ``norm`` → ReLU → ``conv`` 1×1 with bias."""

    def __init__(self, cin: int, num_classes: int):
        super().__init__()
        self.norm = nn.BatchNorm2d(cin)
        self.relu = nn.ReLU(inplace=True)
        self.conv = nn.Conv2d(cin, num_classes, 1, bias=True)


class CSRNet(nn.Module):
    """Keyframe network. ``forward(frames)`` maps B×3×H×W RGB in [0, 1] to B×C×h×w logits,
    h = ceil(ceil(H/2)/2) (the 1/4 grid; no upsampling inside)."""

    def __init__(self, num_classes: int = 19, pretrained_backbone: bool = False):
        super().__init__()
        self.num_classes = num_classes
        self.normalize = ImageNormalize()
        self.backbone = CSRNetBackbone()
        self.logits = LogitsHead(128, num_classes)
        if pretrained_backbone:
            load_imagenet_encoder(self.backbone)

    def forward(self, frames: Tensor) -> Tensor:
        features = self.backbone.encode(self.normalize(frames))  # the normalised frame is freed here
        return self.logits(self.backbone.decode(*features))

    def encoder_parameters(self) -> list[nn.Parameter]:
        """The ResNet-18 encoder's parameters (fine-tuned at a lower learning rate)."""
        encoder = [self.backbone.conv1, self.backbone.bn1] + [getattr(self.backbone, f"layer{i}") for i in range(1, 5)]
        return [p for m in encoder for p in m.parameters()]

    def decoder_parameters(self) -> list[nn.Parameter]:
        """Every parameter that is not the encoder's (SPP, decoder, logits)."""
        encoder = {id(p) for p in self.encoder_parameters()}
        return [p for p in self.parameters() if id(p) not in encoder]


def load_imagenet_encoder(backbone: CSRNetBackbone) -> bool:
    """Load torchvision's ResNet-18 ImageNet weights into the encoder, from the local cache only.

    Never downloads. Returns True when loaded; logs a warning and returns False when the weights
    are not in ``$TORCH_HOME/hub/checkpoints`` (see ``torch.hub.get_dir``).
    """
    folder = os.path.join(torch.hub.get_dir(), "checkpoints")
    for name in RESNET18_IMAGENET_FILES:
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            state = load_file(path)
            state = {k: v for k, v in state.items() if not k.startswith("fc.")}
            missing, unexpected = backbone.load_state_dict(state, strict=False)
            if unexpected:
                raise CheckpointError(f"{path}: unexpected keys for the ResNet-18 encoder: {unexpected[:5]}")
            log.info("ImageNet ResNet-18 weights loaded from %s", path)
            return True
    log.warning("ImageNet ResNet-18 weights are not in %s (%s); the encoder starts from random weights. "
                "Put the file there to use them (nothing is downloaded).", folder, " or ".join(RESNET18_IMAGENET_FILES))
    return False
