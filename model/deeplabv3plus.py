"""DeepLabv3+ with an Xception-65 backbone (output stride 16): DAVSS's keyframe network.

Module and parameter names are those of the released DAVSS checkpoints' ``deeplab.*`` entries
(``xception_features.entry_flow_block1_unit_1.separable_conv1.depthwise`` ...), so released files
load without renaming. Input: B×3×H×W RGB in [0, 1] (no normalisation, as the original); output:
logits B×C×h×w on the 1/4 grid h = ceil(ceil(H/2)/2), never upsampled inside.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: BatchNorm settings of the original: backbone and low-level projection, and the ASPP/decoder ones.
BACKBONE_BN = {"eps": 1e-3, "momentum": 0.0003}
HEAD_BN = {"eps": 1e-5, "momentum": 0.0003}

#: Xception-65 blocks: (name, in, output channels of the three separable convs, shortcut, stride,
#: dilation, activation inside the separable convs).
XCEPTION_BLOCKS = (
    (("entry_flow_block1_unit_1", 64, (128, 128, 128), "conv", 2, 1, False),
     ("entry_flow_block2_unit_1", 128, (256, 256, 256), "conv", 2, 1, False),
     ("entry_flow_block3_unit_1", 256, (728, 728, 728), "conv", 2, 1, False))
    + tuple((f"middle_flow_block1_unit_{i}", 728, (728, 728, 728), "sum", 1, 1, False) for i in range(1, 17))
    + (("exit_flow_block1_unit_1", 728, (728, 1024, 1024), "conv", 1, 1, False),
       ("exit_flow_block2_unit_1", 1024, (1536, 1536, 2048), "none", 1, 2, True)))
#: The block whose second separable conv gives the low-level (1/4 resolution) decoder feature.
LOW_LEVEL_BLOCK = "entry_flow_block2_unit_1"
ASPP_RATES = (6, 12, 18)


class SeparableConv(nn.Module):
    """Depthwise 3×3 (same padding, stride, dilation) → BN → [ReLU] → pointwise 1×1 → BN → [ReLU].

    ``act=False`` (the Xception ``SeparableConv2d_same`` without activation): a ReLU on the unit's
    input instead and no activation inside. The padding of a 3×3 kernel with dilation r is r on
    every side, which equals the original's explicit ``fixed_padding``.
    """

    def __init__(self, cin: int, cout: int, stride: int = 1, dilation: int = 1, act: bool = True,
                 bn: dict = HEAD_BN, input_relu: bool = False):
        super().__init__()
        self.depthwise = nn.Conv2d(cin, cin, 3, stride, padding=dilation, dilation=dilation, groups=cin, bias=False)
        self.depthwise_bn = nn.BatchNorm2d(cin, **bn)
        self.pointwise = nn.Conv2d(cin, cout, 1, bias=False)
        self.pointwise_bn = nn.BatchNorm2d(cout, **bn)
        self.act = act
        self.input_relu = input_relu

    def forward(self, x: Tensor) -> Tensor:
        if self.input_relu:
            x = F.relu(x)
        x = self.depthwise_bn(self.depthwise(x))
        if self.act:
            x = F.relu(x)
        x = self.pointwise_bn(self.pointwise(x))
        return F.relu(x) if self.act else x


class XceptionBlock(nn.Module):
    """Three separable convs (the stride on the third) plus a 1×1-conv, identity or no shortcut.

    ``forward`` returns ``(output, output of the second separable conv)``.
    """

    def __init__(self, cin: int, depths: tuple[int, int, int], skip: str, stride: int, dilation: int, act: bool):
        super().__init__()
        channels = (cin,) + tuple(depths)
        for j in range(3):
            self.add_module(f"separable_conv{j + 1}", SeparableConv(
                channels[j], channels[j + 1], stride if j == 2 else 1, dilation, act, BACKBONE_BN, input_relu=not act))
        self.skip = skip
        if skip == "conv":
            self.shortcut = nn.Sequential(nn.Conv2d(cin, depths[-1], 1, stride, bias=False),
                                          nn.BatchNorm2d(depths[-1], **BACKBONE_BN))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        second = self.separable_conv2(self.separable_conv1(x))
        out = self.separable_conv3(second)
        if self.skip == "conv":
            out = out + self.shortcut(x)
        elif self.skip == "sum":
            out = out + x
        return out, second


class _ConvBN(nn.Module):
    """conv k×k (no bias) → BN → ReLU, with the original's attribute names ``conv`` / ``bn``."""

    def __init__(self, cin: int, cout: int, k: int, stride: int = 1, bn: dict = BACKBONE_BN):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, stride, padding=k // 2, bias=False)
        self.bn = nn.BatchNorm2d(cout, **bn)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.bn(self.conv(x)))


class Xception65(nn.Module):
    """``forward(x) -> (1/16 features with 2048 channels, 1/4 low-level features with 256)``."""

    def __init__(self):
        super().__init__()
        self.entry_flow_conv1_1 = nn.Module()
        self.entry_flow_conv1_1.conv = nn.Conv2d(3, 32, 3, 2, padding=1, bias=False)
        self.entry_flow_bn1_1 = nn.BatchNorm2d(32, **BACKBONE_BN)
        self.entry_flow_conv1_2 = nn.Module()
        self.entry_flow_conv1_2.conv = nn.Conv2d(32, 64, 3, 1, padding=1, bias=False)
        self.entry_flow_bn1_2 = nn.BatchNorm2d(64, **BACKBONE_BN)
        for name, cin, depths, skip, stride, dilation, act in XCEPTION_BLOCKS:
            self.add_module(name, XceptionBlock(cin, depths, skip, stride, dilation, act))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x = F.relu(self.entry_flow_bn1_1(self.entry_flow_conv1_1.conv(x)))
        x = F.relu(self.entry_flow_bn1_2(self.entry_flow_conv1_2.conv(x)))
        low_level = None
        for name, *_ in XCEPTION_BLOCKS:
            x, second = getattr(self, name)(x)
            if name == LOW_LEVEL_BLOCK:
                low_level = second
        return x, low_level


class _ASPPConv(nn.Module):
    """ASPP branch with the original's nesting (``aspp<i>.atrous_convolution.*``)."""

    def __init__(self, cin: int, cout: int, rate: int | None):
        super().__init__()
        if rate is None:
            self.atrous_convolution = _ConvBN(cin, cout, 1, bn=HEAD_BN)
        else:
            self.atrous_convolution = SeparableConv(cin, cout, 1, rate, act=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.atrous_convolution(x)


class DeepLabV3Plus(nn.Module):
    """DeepLabv3+ / Xception-65, OS 16: ``forward(frames) -> logits`` on the 1/4 grid."""

    def __init__(self, num_classes: int = 19):
        super().__init__()
        self.num_classes = num_classes
        self.xception_features = Xception65()
        self.aspp0 = _ASPPConv(2048, 256, None)
        for i, rate in enumerate(ASPP_RATES, start=1):
            self.add_module(f"aspp{i}", _ASPPConv(2048, 256, rate))
        self.image_pooling = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(2048, 256, 1, bias=False),
                                           nn.BatchNorm2d(256, **HEAD_BN), nn.ReLU())
        self.concat_projection = nn.Sequential(nn.Conv2d(1280, 256, 1, bias=False), nn.BatchNorm2d(256, **HEAD_BN),
                                               nn.ReLU(), nn.Dropout2d(0.1))
        self.feature_projection0_conv = nn.Conv2d(256, 48, 1, bias=False)
        self.feature_projection0_bn = nn.BatchNorm2d(48, **BACKBONE_BN)
        self.decoder = nn.Sequential(SeparableConv(304, 256), SeparableConv(256, 256))
        self.logits = nn.Conv2d(256, num_classes, 1, bias=True)

    def forward(self, frames: Tensor) -> Tensor:
        x, low_level = self.xception_features(frames)
        pooled = F.interpolate(self.image_pooling(x), size=x.shape[-2:], mode="bilinear", align_corners=True)
        x = torch.cat([pooled, self.aspp0(x), self.aspp1(x), self.aspp2(x), self.aspp3(x)], 1)
        x = F.interpolate(self.concat_projection(x), size=low_level.shape[-2:], mode="bilinear", align_corners=True)
        low_level = F.relu(self.feature_projection0_bn(self.feature_projection0_conv(low_level)))
        return self.logits(self.decoder(torch.cat([x, low_level], 1)))
