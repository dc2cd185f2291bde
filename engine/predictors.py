"""Streaming predictors: every method that segments a clip frame by frame, behind one interface.

A :class:`Predictor` is reset before each clip and then stepped once per frame, in order:
``step(frame)`` takes a 1×3×H×W float RGB frame in [0, 1] and returns the 1×H×W int64 class map.
:mod:`engine.stream_eval` scores predictors over clips and :mod:`engine.compare` times them; a new
method only needs a predictor.
"""
from __future__ import annotations

from torch import Tensor, nn

from model.blocks import upsample4
from model.fusion import crop
from model.recurrent import RecurrentCSRNet
from model.stream import Stream, StreamingNet

__all__ = ["Predictor", "PerFrame", "Recurrent", "KeyframeStream"]


class Predictor:
    """A streaming segmenter: ``reset()`` before a clip, then ``step(frame)`` on each frame in order."""

    def reset(self) -> None:
        """Forget the previous clip (stateless predictors keep this default)."""

    def step(self, frame: Tensor) -> Tensor:
        """The class map (1×H×W int64) of the next frame (1×3×H×W float RGB in [0, 1])."""
        raise NotImplementedError


class PerFrame(Predictor):
    """A segmentation network run on every frame independently; its logits live on the 1/4 grid and
    are upsampled ×4 (bilinear, ``align_corners=False``) and cropped to the frame (CSRNet)."""

    def __init__(self, net: nn.Module):
        self.net = net

    def step(self, frame: Tensor) -> Tensor:
        return crop(upsample4(self.net(frame)), tuple(frame.shape[-2:])).argmax(1)


class Recurrent(Predictor):
    """A recurrent network (:class:`model.RecurrentCSRNet`): its state is carried between the frames of
    a clip and cleared by :meth:`reset`."""

    def __init__(self, net: RecurrentCSRNet):
        self.stream = net.stream()

    def reset(self) -> None:
        self.stream.reset()

    def step(self, frame: Tensor) -> Tensor:
        return self.stream.step(frame)["pred"]


class KeyframeStream(Predictor):
    """A keyframe + propagation method (EVSS, DAVSS, ...) streaming with a keyframe every ``interval``
    frames of a clip (frames 0, k, 2k, ...; the others warped from the last keyframe and rectified).

    ``interval=1`` is the method's keyframe network on every frame. ``wf`` is EVSS's coarse
    distortion-map weight (None: the net's). ``net`` is anything :class:`model.Stream` drives: a
    :class:`model.StreamingNet`, or a stand-in serving its stages from a cache
    (:class:`engine.evaluate.WindowEvaluator`).
    """

    def __init__(self, net: StreamingNet, interval: int, wf: float | None = None):
        if int(interval) < 1:
            raise ValueError(f"keyframe interval must be >= 1, got {interval}")
        self.interval = int(interval)
        self.stream = Stream(net, wf)
        self.position = 0

    def reset(self) -> None:
        self.stream.reset()
        self.position = 0

    def step(self, frame: Tensor) -> Tensor:
        pred = self.stream.step(frame, keyframe=self.position % self.interval == 0)["pred"]
        self.position += 1
        return pred
