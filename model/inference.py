"""Inference-optimised EVSS: the same numbers as the reference path (to float rounding), faster on CPU.

    from model.inference import optimize_for_inference
    fast_net = optimize_for_inference(net)            # exact: fp32, same predictions to float rounding
    stream = fast_net.stream()
    for i, frame in enumerate(frames):
        pred = stream.step(frame, keyframe=(i % 10 == 0))["pred"]   # B×H×W int64

What changes against ``net.stream()`` (the reference path, which is kept as it is):

* ``fold_bn``: every eval-mode BatchNorm that directly follows a convolution is folded into it.
  CSRNet's pre-activation logits head (BN → ReLU → conv) keeps its BN.
* ``channels_last``: parameters and frames use the NHWC layout (oneDNN's fast path on CPU).
* SK fusion units run lean (:class:`model.blocks.SKFusion`) and FlowNet's transposed convolutions
  compute only the outputs its crops keep (:func:`model.flownet.compute_cropped_deconvolutions`).
* ``winograd`` (CPU): 3×3 stride-1 convolutions with at least 16 channels in and out, and the 5×5
  stride-2 ones as 3×3 convolutions of the space-to-depth input, run as Winograd F(4×4, 3×3) or
  F(6×6, 3×3) (:mod:`model.winograd`): a quarter of the multiplications or less, at rounding about
  1e-6 of the output's magnitude. Off on GPUs, where cuDNN chooses its own algorithms.
* (CPU, float32) 3×3 convolutions with at most four output channels (the flow and edge heads) run
  as one matrix product and nine shifted sums (:mod:`model.narrow_conv`).
* the merge of warped and corrected logits and its argmax run as one fused operator
  (:func:`model.fusion.merge_argmax`) instead of ×4 upsamplings, a softmax and a blend at full
  resolution: the stream is prediction-only (``pred`` and the 1/4-grid products, no full-resolution
  ``logits``).

``fast=True`` trades a measured accuracy change for speed: the three networks hold bf16 weights and
run in bf16 (rather than bf16 autocast, which re-casts the fp32 weights at every call), and the
Winograd layers multiply in bf16 (their transforms stay fp32); outputs return in fp32 for the warp and
the fused merge. ``nonkey_scale=s < 1`` further runs FlowNet and CoNet on non-keyframes resized by
``s`` (about s² of their FLOPs): the flow is resized back to the 1/4 grid with its values scaled,
and CoNet's finest decoder feature and edge logits meet the full-detail warped logits on the 1/4 grid
in CoNet's last 1×1 convolution. Speed and accuracy of each variant: ``python -m tools.benchmark``
(``--compare``, ``--fast-accuracy``) and docs/speed.md.
"""
from __future__ import annotations

import copy
from typing import Callable, Sequence

import torch
from torch import Tensor, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from .blocks import ConvNormAct, SKFusion, quarter_size, resize
from .csrnet import BasicBlock, CSRNetBackbone
from .evss import EVSSCorrection
from .flownet import FlowNetS, compute_cropped_deconvolutions, resize_flow
from .stream import Stream
from .narrow_conv import NarrowConv2d, is_narrow_eligible
from .winograd import WinogradConv2d, is_winograd_eligible, winograd_op_available

__all__ = ["fold_batchnorm", "use_winograd", "use_narrow_convs", "optimize_for_inference", "InferenceEVSS"]


def _fold_pair(parent: nn.Module, conv_name: str, bn_name: str) -> bool:
    conv, bn = getattr(parent, conv_name), getattr(parent, bn_name)
    if not (isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d)) or bn.training:
        return False
    if not bn.track_running_stats or bn.running_mean is None:
        return False
    if conv.out_channels != bn.num_features:
        return False
    setattr(parent, conv_name, fuse_conv_bn_eval(conv, bn))
    setattr(parent, bn_name, nn.Identity())
    return True


def fold_batchnorm(module: nn.Module) -> int:
    """Fold every eval-mode conv → BatchNorm pair of ``module`` in place; returns how many.

    Only pairs whose order in ``forward`` is known are folded: ``ConvNormAct`` (conv, norm),
    ResNet ``BasicBlock`` (conv1, bn1) and (conv2, bn2), the CSRNet stem (conv1, bn1) and adjacent
    (Conv2d, BatchNorm2d) children of an ``nn.Sequential``. Call it on a module in eval mode.
    """
    folded = 0
    for parent in list(module.modules()):
        if isinstance(parent, ConvNormAct):
            folded += _fold_pair(parent, "conv", "norm")
        elif isinstance(parent, BasicBlock):
            folded += _fold_pair(parent, "conv1", "bn1") + _fold_pair(parent, "conv2", "bn2")
        elif isinstance(parent, CSRNetBackbone):
            folded += _fold_pair(parent, "conv1", "bn1")
        elif type(parent) is nn.Sequential:
            names = [name for name, _ in parent.named_children()]
            for a, b in zip(names, names[1:]):
                folded += _fold_pair(parent, a, b)
    return folded


def use_winograd(module: nn.Module, max_channel_pairs: int | None = None,
                 products: torch.dtype = torch.float32) -> int:
    """Replace every eligible convolution of ``module`` (:func:`model.winograd.is_winograd_eligible`)
    by a :class:`model.winograd.WinogradConv2d` whose matrix products run in ``products`` (its tile:
    :func:`model.winograd.default_tile`), in place; returns how many. To keep the widest layers direct (less memory):
    ``optimize_for_inference(net, winograd=False)``, then
    ``use_winograd(fast_net.net, max_channel_pairs=256 * 256)``."""
    return _replace(module, lambda m: is_winograd_eligible(m, max_channel_pairs=max_channel_pairs),
                    lambda m: WinogradConv2d(m, products))


def use_narrow_convs(module: nn.Module) -> int:
    """Replace every 3×3 convolution of ``module`` with at most four output channels (the flow and edge
    heads; :func:`model.narrow_conv.is_narrow_eligible`) by a :class:`model.narrow_conv.NarrowConv2d`,
    in place; returns how many."""
    return _replace(module, is_narrow_eligible, NarrowConv2d)


def _replace(module: nn.Module, eligible: Callable[[nn.Module], bool], make: Callable[[nn.Module], nn.Module]) -> int:
    """Replace, in place, every child module that is ``eligible`` by ``make(child)``; returns how many."""
    replaced = 0
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if eligible(child):
                setattr(parent, name, make(child))
                replaced += 1
    return replaced


class InferenceEVSS(EVSSCorrection):
    """An inference-only copy of an :class:`model.EVSS` (see the module docstring).

    Has the stage methods of ``EVSS`` (``keyframe``, ``flow``, ``conet``) with the layout and
    precision handled inside, ``prepare(frame)`` (the layout conversion of an input frame, done once
    per frame), ``stream(wf)`` and ``predict_clip(frames)``. Stage outputs are float32 in the
    contiguous (NCHW) layout.
    """

    def __init__(self, net: nn.Module, channels_last: bool = True, fold_bn: bool = True, fast: bool = False,
                 nonkey_scale: float = 1.0, folded: int = 0, winograd: int = 0):
        super().__init__()
        self.net = net
        self.channels_last = channels_last
        self.fold_bn = fold_bn
        self.fast = fast
        if not 0 < nonkey_scale <= 1:
            raise ValueError(f"nonkey_scale must be in (0, 1], got {nonkey_scale}")
        self.nonkey_scale = float(nonkey_scale)
        self.folded = folded
        self.winograd = winograd
        self.wf = net.wf
        self.num_classes = net.num_classes

    def extra_repr(self) -> str:
        return (f"channels_last={self.channels_last}, fold_bn={self.fold_bn} ({self.folded} folded), "
                f"winograd={self.winograd} convolutions, fast={self.fast}, nonkey_scale={self.nonkey_scale}")

    @property
    def dtype(self) -> torch.dtype:
        """The precision the networks run in: bfloat16 in the fast mode, else float32."""
        return torch.bfloat16 if self.fast else torch.float32

    def _layout(self, x: Tensor) -> Tensor:
        x = x.to(self.dtype)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def prepare(self, frame: Tensor) -> Tensor:
        """The frame in the layout and precision the networks run in (one conversion per frame)."""
        return self._layout(frame)

    @staticmethod
    def _out(x: Tensor) -> Tensor:
        return x.float().contiguous()

    @torch.no_grad()
    def keyframe(self, frame: Tensor) -> Tensor:
        return self._out(self.net.csrnet(frame))

    def _nonkey_input(self, frame: Tensor) -> Tensor:
        """The frame as FlowNet and CoNet see it: bilinearly resized by ``nonkey_scale``."""
        if self.nonkey_scale == 1:
            return frame
        h, w = frame.shape[-2:]
        return resize(frame, (max(1, round(h * self.nonkey_scale)), max(1, round(w * self.nonkey_scale))))

    @torch.no_grad()
    def flow(self, current: Tensor, previous: Tensor) -> Tensor:
        pair = torch.cat([self._nonkey_input(current), self._nonkey_input(previous)], 1)
        flow = self._out(self.net.flownet(pair))
        return resize_flow(flow, quarter_size(current.shape[-2:])) if self.nonkey_scale != 1 else flow

    @torch.no_grad()
    def conet(self, frame: Tensor, warped_q: Tensor) -> tuple[Tensor, Tensor]:
        warped_q = self._layout(warped_q)
        if self.nonkey_scale == 1:
            edge, update = self.net.conet(frame, warped_q)
        else:  # the decoder runs at the reduced size; its output joins the warped logits on the 1/4 grid
            edge, d2 = self.net.conet.features(self._nonkey_input(frame))
            size_q = warped_q.shape[-2:]
            edge, d2 = resize(edge, size_q), resize(d2, size_q)
            update = self.net.conet.predict_cc(torch.cat([d2, warped_q], 1))
        return self._out(edge), self._out(update)

    def stream(self, wf: float | None = None) -> Stream:
        """A prediction-only :class:`model.stream.Stream`: steps return ``pred`` and the 1/4-grid products."""
        return Stream(self, wf, pred_only=True)

    @torch.no_grad()
    def predict_clip(self, frames: Sequence[Tensor], wf: float | None = None) -> Tensor:
        """Prediction of ``frames[-1]`` from the keyframe ``frames[0]`` (``segment_clip``'s ``pred``)."""
        stream = self.stream(wf)
        out = None
        for i, frame in enumerate(frames):
            out = stream.step(frame, keyframe=(i == 0))
        return out["pred"]


def optimize_for_inference(net: nn.Module, channels_last: bool = True, fold_bn: bool = True, fast: bool = False,
                           nonkey_scale: float = 1.0, winograd: bool | None = None,
                           winograd_products: torch.dtype | None = None, inplace: bool = False) -> InferenceEVSS:
    """An :class:`InferenceEVSS` of a trained ``EVSS`` (a deep copy unless ``inplace``), in eval mode.

    ``fast=True`` selects the fast mode (bf16 weights and activations). ``winograd`` (default: on for a
    network on the CPU when the compiled operator is loaded) runs the eligible convolutions (3×3, and
    5×5 with stride 2) as Winograd F(4×4, 3×3) or F(6×6, 3×3) (:func:`model.winograd.default_tile`), with
    matrix products in ``winograd_products`` (default: bf16 in the fast mode, else fp32).
    ``nonkey_scale < 1`` runs FlowNet and CoNet on non-keyframes resized by that factor (an accuracy
    trade; see the module docstring).
    """
    if not inplace:
        net = copy.deepcopy(net)
    net = net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    folded = fold_batchnorm(net) if fold_bn else 0
    on_cpu = all(p.device.type == "cpu" for p in net.parameters())
    if winograd is None:  # GPUs: cuDNN chooses its own algorithms, Winograd included
        winograd = winograd_op_available() and on_cpu
    for m in net.modules():
        if isinstance(m, SKFusion):
            m.lean = True
        elif isinstance(m, FlowNetS):
            compute_cropped_deconvolutions(m)
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    if fast:
        net = net.to(torch.bfloat16)
    if winograd_products is None:
        winograd_products = torch.bfloat16 if fast else torch.float32
    replaced = use_winograd(net, products=winograd_products) if winograd else 0  # of the final weights
    if on_cpu and not fast:  # float32 maps only (model.narrow_conv)
        use_narrow_convs(net)
    return InferenceEVSS(net, channels_last=channels_last, fold_bn=fold_bn, fast=fast,
                         nonkey_scale=nonkey_scale, folded=folded, winograd=replaced)
