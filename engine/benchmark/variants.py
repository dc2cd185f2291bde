"""The benchmark's networks: EVSS variants by name, DAVSS, and the LRASPP per-frame baseline.

EVSS variants (``--variant``, ``--compare A B`` of ``tools/benchmark.py``):

``original``
    the reference path in the original's order of computation: the plain ``EVSS`` (NCHW, BatchNorm
    unfolded) and its ``net.stream()``, i.e. full-resolution fusion (four ×4 upsamplings, softmax,
    blend) then the argmax.
``exact``
    :func:`model.inference.optimize_for_inference`: BatchNorm folded, ``channels_last``, the fused
    merge-argmax operator, Winograd F(4×4, 3×3) and F(6×6, 3×3) for the 3×3 and 5×5/2 convolutions on
    CPU; fp32, the same numbers to float rounding. ``exact-direct`` is the same with oneDNN's direct
    convolutions (``winograd=False``).
``fast``
    the fast mode, ``optimize_for_inference(net, fast=True)``: ``exact`` with bf16 weights and
    activations and bf16 Winograd matrix products (an accuracy change, measured by ``--fast-accuracy``).
    ``fast-fp32-products`` keeps the Winograd products in fp32 (slower, closer to exact).
``NAME@s``
    any optimised variant above with ``nonkey_scale=s`` (0 < s < 1: FlowNet and CoNet see the
    non-keyframes resized by s, about s² of their FLOPs, a larger accuracy cost), e.g. ``fast@0.75``.

Weights (``--weights``): a checkpoint file (any layout :func:`model.load_checkpoint` reads),
``random``, or ``citys`` / ``camvid``: the deterministic reference weights of the original project's
``make_weights.py`` generator, which is not part of this repository (its path is given explicitly).
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Callable

import torch
from torch import Tensor

from model import DAVSS, EVSS, StreamingNet, build_davss, build_evss, load_checkpoint
from model.inference import optimize_for_inference

from engine.config import ConfigError

__all__ = ["VARIANT_OPTIONS", "VARIANTS", "METHODS", "REFERENCE_WEIGHTS", "BenchmarkError", "variant_options",
           "build_variant", "resolve_weights", "check_weights", "load_evss", "load_davss", "build_lraspp"]

#: The optimised variants: their ``optimize_for_inference`` arguments (``original`` is the plain net).
VARIANT_OPTIONS = {
    "exact": {},
    "exact-direct": {"winograd": False},
    "fast": {"fast": True},
    "fast-fp32-products": {"fast": True, "winograd_products": torch.float32},
}
VARIANTS = ("original", *VARIANT_OPTIONS)
METHODS = ("evss", "davss")
#: ``--weights`` names of the reference generator's data sets.
REFERENCE_WEIGHTS = ("citys", "camvid")


class BenchmarkError(ConfigError):
    """A benchmark setting that cannot be run (a missing weight generator or checkpoint, bad inputs)."""


def variant_options(name: str) -> dict:
    """``optimize_for_inference`` arguments of an optimised variant: a key of :data:`VARIANT_OPTIONS`,
    optionally with ``@s`` for ``nonkey_scale=s`` (``fast@0.75``). Raises ``ValueError`` otherwise."""
    base, at, scale = name.partition("@")
    if base not in VARIANT_OPTIONS:
        raise ValueError(f"unknown variant {name!r}: one of {VARIANTS}, or an optimised one with @SCALE "
                         "(e.g. fast@0.75)")
    if not at:
        return dict(VARIANT_OPTIONS[base])
    try:
        value = float(scale)
    except ValueError:
        value = float("nan")
    if not 0 < value < 1:
        raise ValueError(f"variant {name!r}: the scale after @ must be a number in (0, 1), got {scale!r}")
    return {**VARIANT_OPTIONS[base], "nonkey_scale": value}


def build_variant(name: str, net: EVSS, inplace: bool = False) -> StreamingNet:
    """The streaming net a variant measures: ``net`` itself for ``original``, else its
    :func:`model.inference.optimize_for_inference` (a copy unless ``inplace``)."""
    if name == "original":
        return net
    return optimize_for_inference(net, inplace=inplace, **variant_options(name))


def resolve_weights(weights: str | None, make_weights: Path | None) -> str:
    """The EVSS weights a run uses: ``weights`` as given, or when None (the default) ``citys`` where
    the reference generator is available and ``random`` where it is not."""
    if weights is not None:
        return weights
    return REFERENCE_WEIGHTS[0] if make_weights is not None else "random"


def _reference_state_dict(dataset: str, make_weights: Path) -> dict:
    """``make_weights.make_state_dict(dataset, 0)`` of the generator script at ``make_weights``."""
    spec = importlib.util.spec_from_file_location("make_weights", make_weights)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.make_state_dict(dataset, 0)


def check_weights(weights: str, make_weights: Path | None) -> None:
    """Raise :class:`BenchmarkError` unless :func:`load_evss` can load ``weights``: a checkpoint file,
    ``random``, or a name of :data:`REFERENCE_WEIGHTS` with the generator's path ``make_weights``."""
    if os.path.isfile(weights) or weights == "random":
        return
    if weights not in REFERENCE_WEIGHTS:
        raise BenchmarkError(f"--weights {weights!r} is not a file, nor one of {(*REFERENCE_WEIGHTS, 'random')}")
    if make_weights is None:
        raise BenchmarkError(f"--weights {weights} needs the reference weight generator: pass --make-weights "
                             "PATH/make_weights.py or set EVSS_MAKE_WEIGHTS (or use --weights random or FILE)")
    if not Path(make_weights).is_file():
        raise BenchmarkError(f"the reference weight generator {make_weights} does not exist")


def load_evss(num_classes: int, weights: str, device: torch.device, make_weights: Path | None = None) -> EVSS:
    """EVSS in eval mode on ``device`` with ``weights`` (:func:`check_weights`)."""
    check_weights(weights, make_weights)
    net = build_evss(num_classes).eval()
    if os.path.isfile(weights):
        load_checkpoint(net, weights)
    elif weights in REFERENCE_WEIGHTS:
        load_checkpoint(net, _reference_state_dict(weights, make_weights))
    return net.to(device)


def load_davss(num_classes: int, keyframe: str, weights: str, device: torch.device) -> DAVSS:
    """DAVSS in eval mode on ``device``: the state dict ``weights`` when it is a file, else random."""
    net = build_davss(num_classes, keyframe=keyframe).eval()
    if os.path.isfile(weights):
        load_checkpoint(net, weights)
    return net.to(device)


def build_lraspp(num_classes: int, device: torch.device, bf16: bool) -> Callable[[Tensor], Tensor]:
    """torchvision's ``lraspp_mobilenet_v3_large`` (random weights, ``channels_last``) as a per-frame
    segmenter ``frame (B×3×H×W) -> pred (B×H×W)``; ``bf16``: bf16 weights and activations, as the
    EVSS fast mode (faster than autocast)."""
    # imported here: torchvision's model zoo adds ~90 MB of resident memory to every process that
    # imports it, which would count in the peak-memory workers' (engine.benchmark.memory) numbers
    from torchvision.models.segmentation import lraspp_mobilenet_v3_large

    dtype = torch.bfloat16 if bf16 else torch.float32
    model = lraspp_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=num_classes).eval()
    model = model.to(device, dtype).to(memory_format=torch.channels_last)

    def run(x: Tensor) -> Tensor:
        return model(x.to(dtype).contiguous(memory_format=torch.channels_last))["out"].argmax(1)

    return run
