"""ConvLSTM/ConvGRU cells and the recurrent keyframe network (shapes, hand-computed steps, streaming)."""
from __future__ import annotations

import pytest
import torch

from model import CSRNet, build_recurrent, load_checkpoint
from model.recurrent import ConvGRUCell, ConvLSTMCell, RecurrentCSRNet


def test_cell_shapes():
    x = torch.randn(2, 5, 4, 6)
    h, (h2, c) = ConvLSTMCell(5, 3)(x)
    assert h.shape == h2.shape == c.shape == (2, 3, 4, 6)
    h, state = ConvGRUCell(5, 3)(x)
    assert h.shape == state.shape == (2, 3, 4, 6)
    h, state = ConvGRUCell(5, 3, kernel_size=1)(x, state)
    assert h.shape == (2, 3, 4, 6)


def test_convlstm_step_by_hand():
    """1×1 kernel, one input and one hidden channel: the LSTM equations on scalars."""
    torch.manual_seed(0)
    cell = ConvLSTMCell(1, 1, kernel_size=1)
    w = cell.gates.weight.detach().view(4, 2)
    bias = cell.gates.bias.detach()
    x, h0, c0 = 0.7, -0.3, 0.4
    pre = [w[k, 0] * x + w[k, 1] * h0 + bias[k] for k in range(4)]
    i, f, o, g = torch.sigmoid(pre[0]), torch.sigmoid(pre[1]), torch.sigmoid(pre[2]), torch.tanh(pre[3])
    c1 = f * c0 + i * g
    h1 = o * torch.tanh(c1)
    _, (h, c) = cell(torch.full((1, 1, 1, 1), x), (torch.full((1, 1, 1, 1), h0), torch.full((1, 1, 1, 1), c0)))
    torch.testing.assert_close(c.flatten()[0], c1)
    torch.testing.assert_close(h.flatten()[0], h1)
    assert bias[1].item() == 1.0  # forget-gate bias starts at 1


def test_convgru_step_by_hand():
    torch.manual_seed(0)
    cell = ConvGRUCell(1, 1, kernel_size=1)
    wg, bg = cell.gates.weight.detach().view(2, 2), cell.gates.bias.detach()
    wc, bc = cell.candidate.weight.detach().view(2), cell.candidate.bias.detach()
    x, h0 = 0.7, -0.3
    z = torch.sigmoid(wg[0, 0] * x + wg[0, 1] * h0 + bg[0])
    r = torch.sigmoid(wg[1, 0] * x + wg[1, 1] * h0 + bg[1])
    n = torch.tanh(wc[0] * x + wc[1] * r * h0 + bc[0])
    out, _ = cell(torch.full((1, 1, 1, 1), x), torch.full((1, 1, 1, 1), h0))
    torch.testing.assert_close(out.flatten()[0], (1 - z) * h0 + z * n)


def _randomize_projection(net: RecurrentCSRNet) -> None:
    torch.nn.init.normal_(net.temporal.proj.weight, std=0.5)


def _calibrate_batchnorm(net: RecurrentCSRNet, frames: torch.Tensor) -> None:
    """Running statistics = one batch's (random weights with unit statistics give flat logits)."""
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None
    net.train()
    with torch.no_grad():
        net(frames)
    net.eval()


def test_fresh_recurrent_net_is_its_csrnet_and_loads_stage1_weights():
    torch.manual_seed(0)
    csrnet = CSRNet(5).eval()
    net = build_recurrent(5, "convgru", csrnet=csrnet.state_dict()).eval()
    frames = torch.rand(1, 2, 3, 40, 56)
    with torch.no_grad():
        ref = csrnet(frames[0])
        out = net(frames)[0]
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    # a stage-1 CSRNet checkpoint loads into the whole recurrent net's csrnet part too
    other = RecurrentCSRNet(5)
    assert load_checkpoint(other, {"model": csrnet.state_dict()}) == "csrnet"


@pytest.mark.slow
def test_streaming_equals_batched_sequence_forward():
    torch.manual_seed(0)
    for cell in ("convlstm", "convgru"):
        net = RecurrentCSRNet(5, cell=cell, hidden_channels=8).eval()
        _randomize_projection(net)
        frames = torch.rand(2, 4, 3, 45, 70)                      # odd sizes: ceil grid, crop
        _calibrate_batchnorm(net, frames)
        with torch.no_grad():
            batched = net(frames)
        assert batched.shape == (2, 4, 5, 12, 18)
        stream = net.stream()
        for t in range(4):
            out = stream.step(frames[:, t])
            torch.testing.assert_close(out["logits_q"], batched[:, t], atol=1e-4, rtol=1e-4)
            assert out["pred"].shape == (2, 45, 70) and out["logits"].shape == (2, 5, 48, 72)
        # the state matters: a fresh stream on the last frame alone differs
        stream.reset()
        assert not torch.allclose(stream.step(frames[:, 3])["logits_q"], batched[:, 3], atol=1e-4)


def test_sequence_gradients_through_time():
    torch.manual_seed(0)
    net = RecurrentCSRNet(5, hidden_channels=4)
    _randomize_projection(net)
    frames = torch.rand(1, 3, 3, 32, 32, requires_grad=True)
    net(frames)[:, -1].sum().backward()
    # the last output depends on the first frame only through the recurrent state
    assert frames.grad[:, 0].abs().sum() > 0
    assert net.temporal.cell.gates.weight.grad.abs().sum() > 0
