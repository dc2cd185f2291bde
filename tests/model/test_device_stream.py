"""The streaming step on each device: ``torch.compile(stream.step, fullgraph=True)`` traces a
propagated frame as one graph, the warp and fused ops included (a graph break anywhere raises), and
computes what the eager stream computes; on CUDA the hot loop never synchronises with the host."""
from __future__ import annotations

import pytest
import torch
from torch._dynamo.backends.registry import lookup_backend

from model import build_evss
from model.inference import optimize_for_inference
from tests.devices import DEVICES, full_fp32


def _net_and_frames(device: str, n: int, size=(64, 128)):
    torch.manual_seed(0)
    net = build_evss(19).eval().to(device)
    frames = torch.rand(n, 1, 3, *size, generator=torch.Generator().manual_seed(1)).to(device)
    return net, frames


@pytest.mark.slow
@pytest.mark.parametrize("pred_only", [False, True], ids=["full", "pred_only"])
@pytest.mark.parametrize("device", DEVICES)
def test_compiled_stream_step_is_one_graph_with_the_custom_ops(device, pred_only):
    net, frames = _net_and_frames(device, 2)
    graphs = []
    backend = "aot_eager" if device == "cpu" else "inductor"  # aot_eager: the fake kernels, without C++ codegen

    def recording(gm, example_inputs):
        graphs.append(gm)
        return lookup_backend(backend)(gm, example_inputs)

    eager, compiled = net.stream(), net.stream(pred_only=pred_only)
    torch._dynamo.reset()
    step = torch.compile(compiled.step, fullgraph=True, backend=recording, dynamic=False)
    with full_fp32():
        for stream in (eager, compiled):
            stream.step(frames[0], keyframe=True)
        ref, out = eager.step(frames[1], keyframe=False), step(frames[1], keyframe=False)
    assert len(graphs) == 1
    ops = {str(node.target) for node in graphs[0].graph.nodes}
    assert "evss.resample2d.default" in ops
    assert ("evss.fused_merge_argmax" in ops) == pred_only
    assert out["keyframe"] is False and out["pred"].device.type == device
    for key in ("flow", "warped", "edge", "update") + (() if pred_only else ("logits",)):
        torch.testing.assert_close(out[key], ref[key], rtol=1e-4, atol=1e-4 * ref[key].abs().max().item(),
                                   msg=lambda m: f"{key}: {m}")
    top2 = ref["logits"].topk(2, dim=1).values
    decided = (top2[:, 0] - top2[:, 1]) > 1e-3
    assert decided.float().mean() > 0.9
    assert torch.equal(out["pred"][decided], ref["pred"][decided])
    assert torch.equal(compiled.carried, eager.carried)  # the state the compiled step left behind


@pytest.mark.cuda
@pytest.mark.parametrize("variant", ["original", "original-pred-only", "exact", "fast"])
def test_stream_hot_loop_never_synchronises(variant):
    """torch.cuda.set_sync_debug_mode("error") raises at any host-device synchronisation: none may
    happen in keyframe or propagated steps once the first two (cuDNN's algorithm choice) are done."""
    net, frames = _net_and_frames("cuda", 6, size=(128, 256))
    if variant.startswith("original"):
        stream = net.stream(pred_only=variant.endswith("pred-only"))
    else:
        stream = optimize_for_inference(net, fast=variant == "fast").stream()
    stream.step(frames[0], keyframe=True)
    stream.step(frames[1])
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        outs = [stream.step(frames[i], keyframe=(i == 4)) for i in range(2, 6)]
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert [o["keyframe"] for o in outs] == [False, False, True, False]
    assert all(o["pred"].is_cuda and o["pred"].shape == (1, 128, 256) for o in outs)
