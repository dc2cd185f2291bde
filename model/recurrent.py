"""Recurrent keyframe network: CSRNet with a ConvLSTM or ConvGRU between its encoder and decoder.

The recurrent baseline of the ENet+ConvLSTM thesis (Verherstraeten, ``semantic-video-segmentation``)
on this project's keyframe network: every frame goes through the ResNet-18 encoder; a convolutional
recurrent cell runs on the 1/32 feature ``s32`` (a 3×6 grid at 96×192, 32×64 at 1024×2048, so it
stays cheap) and its hidden state is added back to ``s32`` through a 1×1 projection that starts at
zero, so a freshly built net computes exactly the CSRNet it was initialised from; the SPP/SK decoder
and the logits head follow unchanged.

Output conventions are the project's (see README): frames are RGB in [0, 1]; logits live on the
1/4 grid h = ceil(ceil(H/2)/2); ``pred`` is the full-resolution class map cropped to H×W.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from .blocks import upsample4
from .csrnet import CSRNet
from .fusion import crop

LSTMState = tuple[Tensor, Tensor]
State = Tensor | LSTMState
#: Channels of CSRNet's 1/32 encoder feature, where the recurrent cell sits.
ENCODER_CHANNELS = 512


class ConvLSTMCell(nn.Module):
    """Convolutional LSTM (Shi et al. 2015, without peepholes), state ``(h, c)``.

    One k×k convolution of ``[x, h]`` gives the input, forget and output gates and the candidate
    (in that order along channels): ``c' = σ(f)·c + σ(i)·tanh(g)``, ``h' = σ(o)·tanh(c')``.
    x: B×Cin×H×W → h: B×Chid×H×W. The forget-gate bias starts at 1 (the usual LSTM initialisation).
    """

    def __init__(self, input_channels: int, hidden_channels: int, kernel_size: int = 3):
        super().__init__()
        self.hidden_channels = hidden_channels
        self.gates = nn.Conv2d(input_channels + hidden_channels, 4 * hidden_channels, kernel_size,
                               padding=kernel_size // 2)
        with torch.no_grad():
            self.gates.bias.zero_()
            self.gates.bias[hidden_channels:2 * hidden_channels].fill_(1.0)

    def initial_state(self, x: Tensor) -> LSTMState:
        """Zero ``(h, c)`` for input ``x`` (device, dtype and grid follow it)."""
        zeros = x.new_zeros(x.shape[0], self.hidden_channels, *x.shape[-2:])
        return zeros, zeros.clone()

    def forward(self, x: Tensor, state: LSTMState | None = None) -> tuple[Tensor, LSTMState]:
        """One time step: returns the output ``h'`` and the new state ``(h', c')``."""
        h, c = self.initial_state(x) if state is None else state
        i, f, o, g = self.gates(torch.cat([x, h], 1)).chunk(4, 1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return h, (h, c)


class ConvGRUCell(nn.Module):
    """Convolutional GRU (Ballas et al. 2016), state ``h``.

    ``z, r = σ(conv([x, h]))``, ``n = tanh(conv([x, r·h]))``, ``h' = (1 − z)·h + z·n``.
    x: B×Cin×H×W → h: B×Chid×H×W.
    """

    def __init__(self, input_channels: int, hidden_channels: int, kernel_size: int = 3):
        super().__init__()
        self.hidden_channels = hidden_channels
        self.gates = nn.Conv2d(input_channels + hidden_channels, 2 * hidden_channels, kernel_size,
                               padding=kernel_size // 2)
        self.candidate = nn.Conv2d(input_channels + hidden_channels, hidden_channels, kernel_size,
                                   padding=kernel_size // 2)

    def initial_state(self, x: Tensor) -> Tensor:
        """Zero ``h`` for input ``x``."""
        return x.new_zeros(x.shape[0], self.hidden_channels, *x.shape[-2:])

    def forward(self, x: Tensor, state: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """One time step: returns the output ``h'`` and the new state ``h'``."""
        h = self.initial_state(x) if state is None else state
        z, r = torch.sigmoid(self.gates(torch.cat([x, h], 1))).chunk(2, 1)
        n = torch.tanh(self.candidate(torch.cat([x, r * h], 1)))
        h = (1 - z) * h + z * n
        return h, h


CELLS = {"convlstm": ConvLSTMCell, "convgru": ConvGRUCell}


class RecurrentFeature(nn.Module):
    """``s32 + proj(cell(s32, state))``: the recurrent unit on the encoder's 1/32 feature.

    ``proj`` (1×1, hidden → 512 channels) starts at zero, so the unit starts as the identity.
    """

    def __init__(self, cell: str = "convlstm", channels: int = ENCODER_CHANNELS, hidden_channels: int = 128,
                 kernel_size: int = 3):
        super().__init__()
        if cell not in CELLS:
            raise ValueError(f"cell must be one of {sorted(CELLS)}, got {cell!r}")
        self.cell = CELLS[cell](channels, hidden_channels, kernel_size)
        self.proj = nn.Conv2d(hidden_channels, channels, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, s32: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        h, state = self.cell(s32, state)
        return s32 + self.proj(h), state


class RecurrentCSRNet(nn.Module):
    """CSRNet with a recurrent unit on its 1/32 feature (see the module doc).

    ``forward(frames)`` maps a sequence B×T×3×H×W to logits B×T×C×h×w (the encoder and decoder run
    once on all B·T frames; only the cell steps through time). ``stream()`` segments one frame at
    a time and carries the state; it gives the same logits as the batched forward. The CSRNet part
    is ``self.csrnet``, so ``load_checkpoint(net, stage1_checkpoint)`` loads a trained keyframe
    network into it (see :mod:`model.checkpoint`).
    """

    def __init__(self, num_classes: int = 19, cell: str = "convlstm", hidden_channels: int = 128,
                 kernel_size: int = 3, pretrained_backbone: bool = False):
        super().__init__()
        self.num_classes = num_classes
        self.csrnet = CSRNet(num_classes, pretrained_backbone=pretrained_backbone)
        self.temporal = RecurrentFeature(cell, ENCODER_CHANNELS, hidden_channels, kernel_size)

    def encode(self, frames: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Encoder features of N×3×H×W frames (normalised here)."""
        return self.csrnet.backbone.encode(self.csrnet.normalize(frames))

    def decode(self, s4: Tensor, s8: Tensor, s16: Tensor, s32: Tensor) -> Tensor:
        """Logits on the 1/4 grid from (recurrent-updated) encoder features."""
        return self.csrnet.logits(self.csrnet.backbone.decode(s4, s8, s16, s32))

    def step(self, frame: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """One frame B×3×H×W → (logits B×C×h×w, new state)."""
        s4, s8, s16, s32 = self.encode(frame)
        s32, state = self.temporal(s32, state)
        return self.decode(s4, s8, s16, s32), state

    def sequence(self, frames: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """Sequence B×T×3×H×W → (logits B×T×C×h×w, state after the last frame)."""
        if frames.dim() != 5 or frames.shape[2] != 3:
            raise ValueError(f"frames must be B×T×3×H×W, got {tuple(frames.shape)}")
        b, t = frames.shape[:2]
        s4, s8, s16, s32 = (f.unflatten(0, (b, t)) for f in self.encode(frames.flatten(0, 1)))
        updated = []
        for i in range(t):
            out, state = self.temporal(s32[:, i], state)
            updated.append(out)
        logits = self.decode(s4.flatten(0, 1), s8.flatten(0, 1), s16.flatten(0, 1), torch.stack(updated, 1).flatten(0, 1))
        return logits.unflatten(0, (b, t)), state

    def forward(self, frames: Tensor) -> Tensor:
        return self.sequence(frames)[0]

    def encoder_parameters(self) -> list[nn.Parameter]:
        """The ResNet-18 encoder's parameters."""
        return self.csrnet.encoder_parameters()

    def decoder_parameters(self) -> list[nn.Parameter]:
        """Every parameter that is not the encoder's (the recurrent unit, SPP, decoder, logits)."""
        encoder = {id(p) for p in self.encoder_parameters()}
        return [p for p in self.parameters() if id(p) not in encoder]

    def stream(self) -> RecurrentStream:
        """A streaming segmenter that keeps the recurrent state between frames."""
        return RecurrentStream(self)


class RecurrentStream:
    """``step(frame)`` one frame at a time; ``reset()`` starts a new video (zero state)."""

    def __init__(self, net: RecurrentCSRNet):
        self.net = net
        self.state: State | None = None

    def reset(self) -> None:
        self.state = None

    @torch.no_grad()
    def step(self, frame: Tensor) -> dict:
        """Segment ``frame`` (B×3×H×W): ``logits_q`` (B×C×h×w), ``logits`` (B×C×4h×4w) and ``pred``
        (B×H×W int64), the project's conventions."""
        logits_q, self.state = self.net.step(frame, self.state)
        logits = upsample4(logits_q)
        return {"logits_q": logits_q, "logits": logits, "pred": crop(logits, tuple(frame.shape[-2:])).argmax(1)}
