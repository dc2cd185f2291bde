"""CoNet, the light correction network: an edge (distortion) head and updated logits at 1/4."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from .blocks import ImageNormalize, PooledBatchNorm2d, UpsampleSK, leaky_relu, resize

#: (name, in, out, stride) of the encoder's 3×3 conv → BN → LeakyReLU(0.1) units.
ENCODER = (("conv1", 3, 32, 2), ("conv2", 32, 64, 2), ("conv3", 64, 128, 2), ("conv3_1", 128, 128, 1),
           ("conv4", 128, 256, 2), ("conv4_1", 256, 256, 1), ("conv5", 256, 512, 2), ("conv5_1", 512, 512, 1))


def _conv_bn(cin: int, cout: int, k: int, stride: int = 1,
             norm: type[nn.BatchNorm2d] = nn.BatchNorm2d) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, padding=k // 2, bias=False), norm(cout))


class PyramidPooling(nn.Module):
    """PSP: pooled levels 1, 3, 6 (1×1 conv + BN, no activation), resized back, concatenated with
    the input, fused by a 3×3 conv + BN (no activation)."""

    SIZES = (1, 3, 6)

    def __init__(self, cin: int = 512, out: int = 128):
        super().__init__()
        self.stages = nn.ModuleList(
            nn.Sequential(nn.AdaptiveAvgPool2d(s), *_conv_bn(cin, out, 1, norm=PooledBatchNorm2d)) for s in self.SIZES)
        self.bottleneck = _conv_bn(cin + len(self.SIZES) * out, out, 3)

    def forward(self, x: Tensor) -> Tensor:
        priors = [resize(stage(x), x.shape[-2:]) for stage in self.stages]
        return self.bottleneck(torch.cat(priors + [x], 1))


class EdgeHead(nn.Module):
    """Edge logits (2 channels: non-edge, edge) at the finest decoder resolution from three decoder
    levels, each projected to 32 channels and scored by ONE shared 3×3 conv (``conv4``)."""

    def __init__(self, channels: tuple[int, int, int] = (32, 64, 128), mid: int = 32):
        super().__init__()
        for i, cin in enumerate(channels, start=1):
            self.add_module(f"conv{i}", _conv_bn(cin, mid, 1))
        self.conv4 = nn.Conv2d(mid, 2, 3, padding=1, bias=True)
        self.conv5 = nn.Conv2d(6, 2, 1, bias=True)

    def forward(self, d2: Tensor, d3: Tensor, d4: Tensor) -> Tensor:
        size = d2.shape[-2:]
        e1 = self.conv4(self.conv1(d2))
        e2 = resize(self.conv4(self.conv2(d3)), size)
        e3 = resize(self.conv4(self.conv3(d4)), size)
        return self.conv5(torch.cat([e1, e2, e3], 1))


class CoNet(nn.Module):
    """``forward(frame, warped_logits) -> (edge_logits, updated_logits)``.

    frame: B×3×H×W RGB in [0, 1] (normalised inside); warped_logits: B×C×h×w on the 1/4 grid.
    Returns edge logits B×2×h×w and updated logits B×C×h×w (``predict_cc`` on cat[decoder, warped]).
    """

    def __init__(self, num_classes: int = 19):
        super().__init__()
        self.num_classes = num_classes
        self.normalize = ImageNormalize()
        for name, cin, cout, stride in ENCODER:
            self.add_module(name, nn.Sequential(*_conv_bn(cin, cout, 3, stride), leaky_relu()))
        self.deconv4 = UpsampleSK(128, 256, 128, leaky_relu)
        self.deconv3 = UpsampleSK(128, 128, 64, leaky_relu)
        self.deconv2 = UpsampleSK(64, 64, 32, leaky_relu)
        self.predict_cc = nn.Conv2d(32 + num_classes, num_classes, 1, bias=True)
        self.psp = PyramidPooling(512, 128)
        self.edge_layer = EdgeHead()

    def forward(self, frame: Tensor, warped_logits: Tensor) -> tuple[Tensor, Tensor]:
        edge, d2 = self.features(frame)
        return edge, self.predict_cc(torch.cat([d2, warped_logits], 1))

    def features(self, frame: Tensor) -> tuple[Tensor, Tensor]:
        """Edge logits (B×2×h×w) and the finest decoder feature ``d2`` (B×32×h×w), on the frame's 1/4
        grid: everything of ``forward`` that does not depend on the warped logits."""
        x = self.normalize(frame)
        e2 = self.conv2(self.conv1(x))
        e3 = self.conv3_1(self.conv3(e2))
        e4 = self.conv4_1(self.conv4(e3))
        e5 = self.conv5_1(self.conv5(e4))
        d4 = self.deconv4(self.psp(e5), e4)
        d3 = self.deconv3(d4, e3)
        d2 = self.deconv2(d3, e2)
        return self.edge_layer(d2, d3, d4), d2
