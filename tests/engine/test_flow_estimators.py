"""Flow estimators (engine/flow_estimators.py): OpenCV flows recover a translation, model flows are
upsampled and rescaled to the frame."""
import numpy as np
import pytest
import torch

from engine.flow_estimators import ModelFlow, OpenCVFlow


def _textured_pair(dx, dy, h=96, w=128):
    import cv2

    rng = np.random.default_rng(7)
    base = cv2.GaussianBlur(rng.random((h + 20, w + 20)).astype(np.float32), (0, 0), 1.5)
    base = (base - base.min()) / (base.max() - base.min())
    prev = base[10:10 + h, 10:10 + w]
    cur = base[10 + dy:10 + dy + h, 10 + dx:10 + dx + w]     # cur(x) = prev(x + d)
    to_t = lambda a: torch.from_numpy(np.ascontiguousarray(a)).expand(1, 3, h, w).clone()  # noqa: E731
    return to_t(cur), to_t(prev)


@pytest.mark.parametrize("method,tol", [("dis", 0.5), ("farneback", 0.5)])
def test_opencv_flow_recovers_translation(method, tol):
    cur, prev = _textured_pair(3, -2)
    est = OpenCVFlow(method)
    flow = est(cur, prev)
    assert flow.shape == (1, 2, 96, 128) and flow.dtype == torch.float32
    inner = flow[0, :, 12:-12, 12:-12]
    assert abs(inner[0].median().item() - 3) < tol
    assert abs(inner[1].median().item() + 2) < tol
    assert "opencv" in est.name and "OpenCV" in est.description


def test_model_flow_upsamples_and_scales():
    class QuarterNet(torch.nn.Module):
        def forward(self, x):                       # checks the [current, previous] order
            assert x.shape[1] == 6
            b, _, h, w = x.shape
            out = torch.empty(b, 2, (h + 3) // 4, (w + 3) // 4)
            out[:, 0] = x[:, 0].mean() * 10          # current carries 0.1 -> dx = 1 (1/4 grid)
            out[:, 1] = x[:, 3].mean() * 10          # previous carries 0.05 -> dy = 0.5
            return out

    est = ModelFlow(QuarterNet())
    cur, prev = torch.full((2, 3, 16, 24), 0.1), torch.full((2, 3, 16, 24), 0.05)
    flow = est(cur, prev)
    assert flow.shape == (2, 2, 16, 24)
    assert torch.allclose(flow[:, 0], torch.full((2, 16, 24), 4.0))
    assert torch.allclose(flow[:, 1], torch.full((2, 16, 24), 2.0))
    flow = est(cur[..., :15, :22], prev[..., :15, :22])   # ceil grid 4×6: scale by W/w, H/h
    assert torch.allclose(flow[:, 0], torch.full((2, 15, 22), 22 / 6))
    assert torch.allclose(flow[:, 1], torch.full((2, 15, 22), 0.5 * 15 / 4))
    assert est.name == "model-quarternet"
    with pytest.raises(ValueError, match="B×3×H×W"):
        est(cur[0], prev[0])
