"""DMNet, DAVSS's distortion-map network: where a warped image disagrees with the current one.

A tiny shared feature extractor F is applied to the warped 1/4-resolution keyframe image and to the
current 1/4-resolution image separately (two BatchNorm passes); the map is
``clamp(0.5 − 0.5·cos(F(warped), F(current)), 0, 1)`` per pixel, B×1×h×w. Names
follow the released ``dmnet.*`` entries.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: (name, in, out) of the three separable units.
UNITS = (("conv1", 3, 4), ("conv2", 4, 8), ("conv3", 8, 16))
COSINE_EPS = 1e-8


class _Separable(nn.Module):
    """Depthwise 3×3 (bias) → BN → ReLU → pointwise 1×1 (bias) → BN → ReLU (BN momentum 0.0003)."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.depthwise = nn.Conv2d(cin, cin, 3, 1, 1, groups=cin, bias=True)
        self.depthwise_bn = nn.BatchNorm2d(cin, momentum=0.0003)
        self.pointwise = nn.Conv2d(cin, cout, 1, bias=True)
        self.pointwise_bn = nn.BatchNorm2d(cout, momentum=0.0003)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.depthwise_bn(self.depthwise(x)))
        return F.relu(self.pointwise_bn(self.pointwise(x)))


class DMNet(nn.Module):
    """``forward(warped_image_q, current_image_q) -> distortion map`` (B×1×h×w in [0, 1]).

    Both inputs are B×3×h×w RGB in [0, 1] on the 1/4 grid. :meth:`features` gives F's 16-d output.
    """

    def __init__(self):
        super().__init__()
        for name, cin, cout in UNITS:
            self.add_module(name, nn.Sequential(_Separable(cin, cout), nn.BatchNorm2d(cout), nn.ReLU()))
        self.conv4 = nn.Conv2d(16, 16, 1, bias=True)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The original's DMNet-stage init: xavier-normal weights, zero biases, BN weight 1 / bias 0."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.xavier_normal_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def features(self, image_q: Tensor) -> Tensor:
        """F(image): B×16×h×w."""
        return self.conv4(self.conv3(self.conv2(self.conv1(image_q))))

    def forward(self, warped_image_q: Tensor, current_image_q: Tensor) -> Tensor:
        warped = self.features(warped_image_q)
        current = self.features(current_image_q)
        cos = F.cosine_similarity(warped, current, dim=1, eps=COSINE_EPS).unsqueeze(1)
        return torch.clamp(0.5 - 0.5 * cos, 0, 1)
