"""FlowNetS (slim, EVSS variant): flow between two frames on the 1/4 grid, in 1/4-grid pixels."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: (name, in, out, kernel, stride) of the encoder convolutions, each followed by LeakyReLU(0.1).
ENCODER = (("conv1", 6, 24, 7, 2), ("conv2", 24, 48, 5, 2), ("conv3", 48, 96, 5, 2), ("conv3_1", 96, 96, 3, 1),
           ("conv4", 96, 192, 3, 2), ("conv4_1", 192, 192, 3, 1), ("conv5", 192, 192, 3, 2),
           ("conv5_1", 192, 192, 3, 1), ("conv6", 192, 384, 3, 2), ("conv6_1", 384, 384, 3, 1))
#: Pyramid levels from coarse to fine: (level, channels of the map the flow is predicted from).
LEVELS = ((6, 384), (5, 386), (4, 290), (3, 146), (2, 74))
#: Refinement deconvolutions (name, in, out).
DECONVS = (("deconv5", 384, 192), ("deconv4", 386, 96), ("deconv3", 290, 48), ("deconv2", 146, 24))
FLOW_SCALE = 5.0


def _conv(cin: int, cout: int, k: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, (k - 1) // 2, bias=True), nn.LeakyReLU(0.1, inplace=True))


def _crop_to(x: Tensor, like: Tensor, deconv: nn.ConvTranspose2d) -> Tensor:
    """Crop a 4×4/2 transposed-conv output to the encoder map it joins. The original crops the full
    (2n+2) output (padding 0) from (1, 1); a padding p drops p rows and columns on each side, so the
    crop starts at 1 − p (:func:`compute_cropped_deconvolutions`)."""
    h, w = like.shape[-2:]
    top, left = 1 - deconv.padding[0], 1 - deconv.padding[1]
    return x[:, :, top:top + h, left:left + w]


def compute_cropped_deconvolutions(net: nn.Module) -> None:
    """Give the transposed convolutions of a FlowNetS (or CFNet) padding 1, in place: they then compute
    only the 2n outputs the crops keep instead of 2n+2 (same numbers to float rounding, less work; an
    inference transform)."""
    for m in net.modules():
        if isinstance(m, nn.ConvTranspose2d):
            m.padding = (1, 1)


def resize_flow(flow: Tensor, size: tuple[int, int]) -> Tensor:
    """A B×2×h×w flow (in its grid's pixels) bilinearly resized to ``size``, values scaled to the new grid."""
    h, w = flow.shape[-2:]
    out = F.interpolate(flow, size=tuple(size), mode="bilinear", align_corners=False)
    scale = torch.tensor([size[1] / w, size[0] / h], dtype=out.dtype, device=out.device).view(1, 2, 1, 1)
    return out * scale


class FlowNetS(nn.Module):
    """``forward(pair)``: pair = cat[current, previous] (B×6×H×W, RGB in [0, 1], not normalised).

    Returns B×2×h×w on the 1/4 grid (h = ceil(ceil(H/2)/2)): channel 0 = dx, 1 = dy, in 1/4-grid
    pixels, the position of each current pixel in the previous frame (backward flow).
    """

    def __init__(self):
        super().__init__()
        for name, cin, cout, k, stride in ENCODER:
            self.add_module(name, _conv(cin, cout, k, stride))
        for level, cin in LEVELS:
            self.add_module(f"predict_flow{level}", nn.Conv2d(cin, 2, 3, 1, 1, bias=True))
        for name, cin, cout in DECONVS:
            self.add_module(name, nn.Sequential(nn.ConvTranspose2d(cin, cout, 4, 2, 0, bias=False),
                                                nn.LeakyReLU(0.1, inplace=True)))
        for level, _ in LEVELS[:-1]:
            self.add_module(f"upsample_flow{level}to{level - 1}", nn.ConvTranspose2d(2, 2, 4, 2, 0, bias=False))

    def forward(self, pair: Tensor) -> Tensor:
        c2 = self.conv2(self.conv1(pair))
        c3 = self.conv3_1(self.conv3(c2))
        c4 = self.conv4_1(self.conv4(c3))
        c5 = self.conv5_1(self.conv5(c4))
        x = self.conv6_1(self.conv6(c5))
        for level, skip in zip((6, 5, 4, 3), (c5, c4, c3, c2)):
            flow = getattr(self, f"predict_flow{level}")(x)
            deconv_layer = getattr(self, f"deconv{level - 1}")
            up_layer = getattr(self, f"upsample_flow{level}to{level - 1}")
            deconv, up = deconv_layer(x), up_layer(flow)
            parts = [skip, _crop_to(deconv, skip, deconv_layer[0]), _crop_to(up, skip, up_layer)]
            if level > 3:  # the finest concatenation feeds only predict_flow2
                x = torch.cat(parts, 1)
        head = self.predict_flow2  # an inference head (model.narrow_conv) may read the parts where they lie
        return FLOW_SCALE * head(parts if getattr(head, "takes_parts", False) else torch.cat(parts, 1))
