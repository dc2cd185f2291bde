"""Per-stage zero-argument functions of one measured network, driving its public stream.

A runner holds a streaming net and its ``net.stream()``. :meth:`StageRunner.stage_functions` returns,
in table order, ``key`` (the keyframe network to its 1/4-grid logits), ``key_step`` (the stream's
keyframe step: ``stream.reset(); stream.step(f0, keyframe=True)``), the method's parts of a
non-keyframe step on fixed inputs, and ``nonkey`` (the stream's whole non-keyframe step from the state
a keyframe step leaves: ``stream.restore(after_key); stream.step(f1)``). Restoring that state makes
every timed non-keyframe step alike and leaves the keyframe's class map to the keyframe step, where
the stream computes it.

EVSS's parts: ``flownet``, ``warp`` (of the keyframe logits), ``conet``, ``fusion`` (coarse distortion
map, merge and argmax up to the full-resolution prediction, with CoNet's outputs given). DAVSS's:
``flownet``, ``warp`` (one warp of the carried logits and 1/4 image), ``downsample`` (the current
frame to the 1/4 grid), ``dmnet``, ``cfnet``, ``merge`` (the ×4 upsamplings, blend and argmax).
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn

from model import DAVSS, EVSS, StreamingNet, StreamState
from model.evss import rectify_logits, rectify_pred
from model.fusion import crop
from model.warp import warp

from .variants import build_variant

__all__ = ["StageFunctions", "StageRunner", "EVSSRunner", "DAVSSRunner"]

StageFunctions = dict[str, Callable[[], object]]


class StageRunner:
    """One measured network: ``model`` (the streaming net), ``net`` (the network whose weights it runs,
    ``model`` itself unless it was derived from one), its ``stream``, the precision its convolutions
    run in (``dtype``), and its stage functions. Subclasses give the parts of a non-keyframe step
    (:meth:`part_functions`) and the stages whose FLOPs are counted (``flop_stages``)."""

    flop_stages: tuple[str, ...] = ()

    def __init__(self, name: str, model: StreamingNet, net: nn.Module | None = None):
        self.name = name
        self.model = model
        self.net = model if net is None else net
        self.stream = model.stream()
        self.dtype = next(model.parameters()).dtype

    def part_functions(self, f0: Tensor, f1: Tensor, after_key: StreamState) -> StageFunctions:
        """The stages inside a non-keyframe step, on the prepared frames ``f0`` (keyframe) and ``f1``
        and the stream's state after the keyframe step; inputs computed here, once."""
        raise NotImplementedError

    def stage_functions(self, frames: list[Tensor]) -> StageFunctions:
        """Per stage, in table order, a zero-argument function running it on ``frames[0]`` (keyframe)
        and ``frames[1]`` (B×3×H×W in [0, 1]) with inputs computed once here."""
        model, stream = self.model, self.stream
        with torch.no_grad():
            f0, f1 = (model.prepare(f) for f in frames[:2])
            stream.reset()
            stream.step(frames[0], keyframe=True)
            after_key = stream.state
            parts = self.part_functions(f0, f1, after_key)

        def key_step() -> dict:
            stream.reset()
            return stream.step(frames[0], keyframe=True)

        def nonkey() -> dict:
            stream.restore(after_key)
            return stream.step(frames[1])

        return {"key": lambda: model.keyframe(f0), "key_step": key_step, **parts, "nonkey": nonkey}


class EVSSRunner(StageRunner):
    """The EVSS variant ``name`` of ``net`` (:func:`engine.benchmark.variants.build_variant`; optimised
    in place when ``inplace``, a copy otherwise): ``original``'s stream fuses at full resolution, an
    optimised one's prediction-only stream merges and takes the argmax in one fused operator."""

    flop_stages = ("key", "flownet", "conet", "nonkey")

    def __init__(self, name: str, net: EVSS, inplace: bool = False):
        super().__init__(name, build_variant(name, net, inplace), net)

    def part_functions(self, f0: Tensor, f1: Tensor, after_key: StreamState) -> StageFunctions:
        model, stream = self.model, self.stream
        key, key_classes = after_key.carried, after_key.key_classes
        size = (int(f1.shape[-2]), int(f1.shape[-1]))
        flow = model.flow(f1, f0)
        warped = warp(key, flow)
        edge, update = model.conet(f1, warped)

        def conet_outputs(frame: Tensor, warped_q: Tensor) -> tuple[Tensor, Tensor]:
            return edge, update

        def fusion() -> Tensor:
            if stream.pred_only:
                return rectify_pred(conet_outputs, f1, warped, key_classes, stream.wf, size)["pred"]
            return crop(rectify_logits(conet_outputs, f1, warped, key_classes, stream.wf)["logits"], size).argmax(1)

        return {
            "flownet": lambda: model.flow(f1, f0),
            "warp": lambda: warp(key, flow),
            "conet": lambda: model.conet(f1, warped),
            "fusion": fusion,
        }


class DAVSSRunner(StageRunner):
    """DAVSS through its plain ``net.stream()`` (DAVSS has no optimised variant)."""

    flop_stages = ("key", "flownet", "dmnet", "cfnet", "nonkey")
    model: DAVSS

    def __init__(self, model: DAVSS):
        super().__init__("davss", model)

    def part_functions(self, f0: Tensor, f1: Tensor, after_key: StreamState) -> StageFunctions:
        model, carried = self.model, after_key.carried
        size = (int(f1.shape[-2]), int(f1.shape[-1]))
        flow = model.flow(f1, f0)
        warped = warp(carried, flow)
        warped_q, warped_image_q = model.carried_logits(warped), warped[:, model.num_classes:]
        current_q = model.downsample(f1)
        dm_q = model.dmnet(warped_image_q, current_q)
        cfnet_q = model.cfnet(f1)
        return {
            "flownet": lambda: model.flow(f1, f0),
            "warp": lambda: warp(carried, flow),
            "downsample": lambda: model.downsample(f1),
            "dmnet": lambda: model.dmnet(warped_image_q, current_q),
            "cfnet": lambda: model.cfnet(f1),
            "merge": lambda: model.merge(warped_q, cfnet_q, dm_q, size).logits.argmax(1),
        }
