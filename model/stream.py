"""Keyframe + propagation streaming: one interface every method implements, one loop that runs it.

A method (EVSS, DAVSS, the inference-optimised EVSS, ...) subclasses :class:`StreamingNet` and
implements its stages; :class:`Stream` owns the per-frame loop and the carried state:

* keyframe: ``logits_q = net.keyframe(frame)``; the carried state is ``net.carry(frame, logits_q)``
  and what the corrections need of the keyframe is ``net.keyframe_classes(logits_q)``;
* otherwise: ``flow_q = net.flow(frame, previous)``, the state is warped along it
  (:func:`model.warp.warp`) and ``net.rectify(frame, carried, key_classes, wf)`` corrects it.

Corrections never propagate (as in the original code): the raw warped state is carried from step to
step, so ``step`` at frame t returns what ``segment_clip(frames[key..t])`` returns for it, and the
memory is independent of the length of the video.

Which frames are keyframes is the caller's choice (``step(frame, keyframe=True)``) or a
:class:`model.schedule.KeyframeSchedule`'s (``net.stream(schedule=...)``): a fixed interval, or a
decision from the distortion map the method predicts for the propagated frame
(:meth:`StreamingNet.distortion_q`).

Conventions: frames are B×3×H×W RGB floats in [0, 1]; ``*_q`` tensors live on the 1/4 grid
(h = ceil(H/4)); flows are (dx, dy) in 1/4-grid pixels, "where each current pixel is found in the
previous frame"; full-resolution logits are B×C×4h×4w and ``pred`` is cropped to H×W (int64).
"""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from .blocks import upsample4
from .fusion import class_index, crop
from .schedule import KeyframeSchedule, distortion_signal
from .warp import warp

__all__ = ["StreamingNet", "Stream", "StreamState"]


class StreamingNet(nn.Module):
    """The stages a keyframe + propagation method implements (subclasses set ``num_classes``).

    Required: :meth:`keyframe`, :meth:`flow`, :meth:`rectify`. The others have defaults that suit a
    method carrying plain logits (EVSS): override them where a method differs.
    """

    num_classes: int

    def keyframe(self, frame: Tensor) -> Tensor:
        """Keyframe-network logits B×C×h×w of a (prepared) frame."""
        raise NotImplementedError

    def flow(self, current: Tensor, previous: Tensor) -> Tensor:
        """Flow B×2×h×w from ``current`` back to ``previous`` (1/4-grid pixels)."""
        raise NotImplementedError

    def rectify(self, frame: Tensor, carried: Tensor, key_classes: Tensor | None, wf: float | None = None) -> dict:
        """Correct the warped ``carried`` state at ``frame``; returns at least ``logits``
        (B×C×4h×4w, the merged full-resolution logits) and the method's intermediate products."""
        raise NotImplementedError

    def carry(self, frame: Tensor, logits_q: Tensor) -> Tensor:
        """The state a keyframe starts and the flow warps (default: the keyframe's logits)."""
        return logits_q

    def carried_logits(self, carried: Tensor) -> Tensor:
        """The (warped) logits inside a carried state."""
        return carried

    def keyframe_classes(self, logits_q: Tensor) -> Tensor | None:
        """What :meth:`rectify` needs of the keyframe (default: its class map, B×1×h×w int64)."""
        return class_index(logits_q)

    def upsample(self, logits_q: Tensor) -> Tensor:
        """1/4 grid → full-resolution grid (default: bilinear ×4, ``align_corners=False``)."""
        return upsample4(logits_q)

    def keyframe_outputs(self, frame: Tensor, logits_q: Tensor, carried: Tensor) -> dict:
        """The full-resolution outputs of a keyframe step (default: ``logits``)."""
        return {"logits": self.upsample(logits_q)}

    def keyframe_pred(self, logits_q: Tensor, size: tuple[int, int]) -> dict:
        """A prediction-only keyframe step's outputs: ``pred`` (B×H×W)."""
        return {"pred": crop(self.upsample(logits_q), size).argmax(1)}

    def rectify_pred(self, frame: Tensor, carried: Tensor, key_classes: Tensor | None, wf: float | None,
                     size: tuple[int, int]) -> dict:
        """A prediction-only correction: ``pred`` (B×H×W) and the 1/4-grid products (default: through
        :meth:`rectify`; a method may compute ``pred`` without full-resolution logits)."""
        out = self.rectify(frame, carried, key_classes, wf)
        out["pred"] = crop(out.pop("logits"), size).argmax(1)
        return out

    def prepare(self, frame: Tensor) -> Tensor:
        """The frame in the layout and precision the networks run in (default: as it is)."""
        return frame

    def distortion_q(self, out: dict, wf: float | None = None) -> Tensor:
        """The distortion map the method predicts for a rectified frame, B×1×h×w in [0, 1] on the 1/4
        grid, from the outputs of :meth:`rectify` or :meth:`rectify_pred` (adaptive keyframe
        schedules read it). A method without one raises NotImplementedError."""
        raise NotImplementedError(f"{type(self).__name__} predicts no distortion map: adaptive keyframe "
                                  "schedules need one")

    def stream(self, wf: float | None = None, pred_only: bool = False,
               schedule: KeyframeSchedule | None = None) -> "Stream":
        """A streaming segmenter: ``step(frame)`` one frame at a time, keyframes chosen by the caller
        or by ``schedule`` (see :class:`Stream`)."""
        return Stream(self, wf, pred_only, schedule)


class StreamState(NamedTuple):
    """What a stream carries between steps (all None before the first keyframe)."""

    previous: Tensor | None       # the last (prepared) frame
    carried: Tensor | None        # the warped state, on the 1/4 grid
    key_classes: Tensor | None    # what the corrections need of the keyframe


class Stream:
    """Segment a video one frame at a time with a :class:`StreamingNet`.

    Args:
        net: the method, in eval mode.
        wf: weight of EVSS's coarse distortion map in the fine one (None: the net's default; unused
            by methods without one).
        pred_only: return ``pred`` and the 1/4-grid products but no full-resolution ``logits``
            (the net may compute the prediction without them; same prediction up to float rounding).
        schedule: decides the keyframes of ``step(frame)`` calls that do not say (None: only the
            first frame and those the caller marks).
    """

    def __init__(self, net: StreamingNet, wf: float | None = None, pred_only: bool = False,
                 schedule: KeyframeSchedule | None = None):
        self.net = net
        self.wf = getattr(net, "wf", None) if wf is None else float(wf)
        self.pred_only = bool(pred_only)
        self.schedule = schedule
        self.reset()

    def reset(self) -> None:
        """Forget the carried state (the next step is a keyframe) and restart the schedule."""
        self._state = StreamState(None, None, None)
        self.since_keyframe = 0
        if self.schedule is not None:
            self.schedule.reset()

    @property
    def state(self) -> StreamState:
        """The carried state (to restore later with :meth:`restore`, e.g. to branch a stream)."""
        return self._state

    def restore(self, state: StreamState) -> None:
        """Continue from a state returned by :attr:`state`."""
        self._state = StreamState(*state)

    @property
    def carried(self) -> Tensor | None:
        """The carried (warped) state on the 1/4 grid."""
        return self._state.carried

    def _warp_to(self, frame: Tensor) -> Tensor:
        previous = self._state.previous
        if frame.shape != previous.shape:
            raise ValueError(f"frame of shape {tuple(frame.shape)} follows one of {tuple(previous.shape)}; "
                             "every frame of a stream must have the same size")
        flow_q = self.net.flow(frame, previous)
        self._state = self._state._replace(carried=warp(self._state.carried, flow_q))
        return flow_q

    @torch.no_grad()
    def propagate(self, frame: Tensor) -> Tensor:
        """Carry the state to a frame whose segmentation is not needed (no correction: later steps
        are unchanged, since corrections never propagate). Returns the flow, B×2×h×w."""
        if self._state.carried is None:
            raise ValueError("propagate() needs a keyframe first: call step(frame, keyframe=True)")
        frame = self.net.prepare(frame)
        flow_q = self._warp_to(frame)
        self._state = self._state._replace(previous=frame)
        return flow_q

    @torch.no_grad()
    def step(self, frame: Tensor, keyframe: bool | None = None) -> dict:
        """Segment ``frame`` (B×3×H×W). A keyframe when ``keyframe`` is True, when no keyframe was
        seen yet, or, with ``keyframe`` None, when the schedule says so.

        Returns ``pred`` (B×H×W int64), ``keyframe`` (bool), ``logits`` (B×C×4h×4w) unless
        ``pred_only``, and the stage outputs: ``key_logits`` (and what the method adds) for a
        keyframe; ``flow``, ``warped`` and those of the net's ``rectify`` otherwise. With a schedule
        that reads the distortion map, ``distortion`` is the statistic it read (frames it propagated,
        including those it then made keyframes: ``propagated`` True).
        """
        schedule = self.schedule if keyframe is None else None
        since = self.since_keyframe + 1
        if keyframe or self._state.carried is None or (schedule is not None and schedule.due(since)):
            out = self._keyframe_step(frame)
        else:
            out = self._propagate_step(frame)
            if schedule is not None and schedule.signal is not None:
                score = distortion_signal(self.net.distortion_q(out, self.wf), schedule.signal)
                if schedule.decide(score, since):
                    out = dict(self._keyframe_step(frame), propagated=True)
                out["distortion"] = score
        self.since_keyframe = 0 if out["keyframe"] else since
        if self.schedule is not None:
            self.schedule.update(out["keyframe"])
        return out

    def _keyframe_step(self, frame: Tensor) -> dict:
        size = (int(frame.shape[-2]), int(frame.shape[-1]))
        net = self.net
        frame = net.prepare(frame)
        logits_q = net.keyframe(frame)
        carried = net.carry(frame, logits_q)
        self._state = StreamState(frame, carried, net.keyframe_classes(logits_q))
        out = {"key_logits": logits_q, "keyframe": True}
        out.update(net.keyframe_pred(logits_q, size) if self.pred_only
                   else net.keyframe_outputs(frame, logits_q, carried))
        return self._with_pred(out, size)

    def _propagate_step(self, frame: Tensor) -> dict:
        size = (int(frame.shape[-2]), int(frame.shape[-1]))
        net = self.net
        frame = net.prepare(frame)
        flow_q = self._warp_to(frame)
        carried, key_classes = self._state.carried, self._state.key_classes
        if self.pred_only:
            out = net.rectify_pred(frame, carried, key_classes, self.wf, size)
        else:
            out = net.rectify(frame, carried, key_classes, self.wf)
        out.setdefault("warped", net.carried_logits(carried))
        out.update(flow=flow_q, keyframe=False)
        self._state = self._state._replace(previous=frame)
        return self._with_pred(out, size)

    @staticmethod
    def _with_pred(out: dict, size: tuple[int, int]) -> dict:
        if "pred" not in out:
            out["pred"] = crop(out["logits"], size).argmax(1)
        return out
