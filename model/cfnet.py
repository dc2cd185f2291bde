"""CFNet, DAVSS's correction-feature network: a light encoder-decoder segmenting the current frame.

Names follow the released DAVSS checkpoints' ``cfnet.*`` entries. Input: B×3×H×W RGB in [0, 1] (no
normalisation); output: logits B×C×h×w on the 1/4 grid h = ceil(ceil(H/2)/2).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from .blocks import leaky_relu
from .flownet import _crop_to

#: (name, in, out, stride) of the encoder's 3×3 conv (no bias) → BN → LeakyReLU(0.1) units.
ENCODER = (("conv1", 3, 32, 2), ("conv2", 32, 64, 2), ("conv3", 64, 128, 2), ("conv3_1", 128, 128, 1),
           ("conv4", 128, 256, 2), ("conv4_1", 256, 256, 1), ("conv5", 256, 256, 2), ("conv5_1", 256, 256, 1),
           ("conv6", 256, 512, 2), ("conv6_1", 512, 512, 1))
#: Decoder deconvolutions (name, in, out); each output joins the encoder map of its level as [skip, deconv].
DECONVS = (("deconv5", 512, 256), ("deconv4", 512, 128), ("deconv3", 384, 64), ("deconv2", 192, 32))


class CFNet(nn.Module):
    """``forward(frame) -> logits`` (B×C×h×w). BatchNorm eps 1e-5, momentum 0.1 (PyTorch defaults)."""

    def __init__(self, num_classes: int = 19):
        super().__init__()
        self.num_classes = num_classes
        for name, cin, cout, stride in ENCODER:
            self.add_module(name, nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout),
                                                leaky_relu()))
        for name, cin, cout in DECONVS:
            self.add_module(name, nn.Sequential(nn.ConvTranspose2d(cin, cout, 4, 2, 0, bias=False), leaky_relu()))
        self.predict_cc = nn.Conv2d(96, num_classes, 1, bias=True)

    def forward(self, frame: Tensor) -> Tensor:
        c2 = self.conv2(self.conv1(frame))
        c3 = self.conv3_1(self.conv3(c2))
        c4 = self.conv4_1(self.conv4(c3))
        c5 = self.conv5_1(self.conv5(c4))
        x = self.conv6_1(self.conv6(c5))
        for name, skip in zip(("deconv5", "deconv4", "deconv3", "deconv2"), (c5, c4, c3, c2)):
            deconv = getattr(self, name)
            x = torch.cat([skip, _crop_to(deconv(x), skip, deconv[0])], 1)
        return self.predict_cc(x)
