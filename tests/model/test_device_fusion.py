"""The fused upsample-softmax-blend-argmax operators (evss::fused_merge_argmax, evss::upsample_argmax)
on each device against the unfused PyTorch arithmetic in float64 (model.fusion.fuse on the CPU, from
the same rounded inputs): the class may differ only where the two best merged logits are within
1e-4 of each other.  Batch 2, cropped and full output sizes, channels_last, float32, bfloat16 and
float16 inputs (the kernels compute in float32)."""
from __future__ import annotations

import pytest
import torch

from model.blocks import upsample4
from model.fusion import crop, merge_argmax, upsample_argmax
from tests.devices import DEVICES
from tests.model.test_inference import _inputs, _reference

CASES = [(2, 19, 7, 9, 0.2, (25, 33)), (1, 11, 5, 13, 0.0, None), (2, 3, 6, 4, 1.0, (24, 13))]
DTYPES = [torch.float32, torch.bfloat16, torch.float16]


def _place(t: torch.Tensor, device: str, layout: torch.memory_format, dtype: torch.dtype) -> torch.Tensor:
    return t.to(device, dtype).contiguous(memory_format=layout)


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last], ids=["nchw", "nhwc"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("case", CASES, ids=str)
@pytest.mark.parametrize("device", DEVICES)
def test_fused_merge_argmax_matches_unfused(device, case, dtype, layout):
    b, c, h, w, wf, size = case
    inputs = [t.to(dtype) for t in _inputs(b, c, h, w, seed=h * 31 + w)]
    ref, margin = _reference(*[t.double() for t in inputs], wf, size or (4 * h, 4 * w))
    out = merge_argmax(*[_place(t, device, layout, dtype) for t in inputs], wf, size, backend="compiled")
    assert out.device.type == device and out.dtype == torch.int64 and out.shape == ref.shape
    wrong = (out.cpu() != ref) & (margin >= 1e-4)
    assert wrong.sum() == 0, f"{int(wrong.sum())} pixels of margin >= 1e-4 change class"
    assert (margin >= 1e-4).float().mean() > 0.9  # the check covers most pixels


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("device", DEVICES)
def test_upsample_argmax_matches_unfused(device, dtype):
    logits = (3 * torch.randn(2, 19, 9, 14, generator=torch.Generator().manual_seed(0))).to(dtype)
    for size in (None, (33, 50)):
        full = upsample4(logits.double())
        full = full if size is None else crop(full, size)
        top2 = full.topk(2, dim=1).values
        out = upsample_argmax(_place(logits, device, torch.channels_last, dtype), size, backend="compiled")
        assert out.device.type == device and out.shape == full.argmax(1).shape
        assert ((out.cpu() != full.argmax(1)) & ((top2[:, 0] - top2[:, 1]) >= 1e-4)).sum() == 0
