"""Checkpoint layouts: load released EVSS/CSRNet/FlowNet files and this project's own, convert both ways.

Layouts
  released full : ``torch.save(ddp_net.state_dict())`` of the original: every key prefixed ``module.``,
                  the ResNet-18 backbone twice (``resnet.*`` and ``csrnet.backbone.*``, equal values),
                  plus two unused ``img_mean``/``img_std`` buffers in each copy (985 keys).
  released csrnet : ``backbone.*`` + ``logits.*`` (387 keys).  released flownet : FlowNetS keys (38).
  clean         : this project's ``EVSS.state_dict()``: ``csrnet.*``, ``flownet.*``, ``conet.*``, no
                  duplicates, no prefixes, no unused buffers.
  project       : a training checkpoint ``{"model": clean state_dict, ...}``.

DAVSS (``make_weights_davss.py`` layouts): ``scnet`` (the whole net, 1041 keys) and ``scnet_ddp``
(the same with ``module.``) load into the whole net; ``dmnet`` (59 keys, no prefix) into ``net.dmnet``;
``pretrained`` (``deeplab.*`` + ``flownet.*``) into those parts, leaving ``cfnet``/``dmnet`` as they
are (the net lists them in ``optional_checkpoint_parts``; the original loads that file non-strict).
"""
from __future__ import annotations

import os
from collections import OrderedDict
from typing import Mapping

import torch
from torch import Tensor, nn

from .errors import CheckpointError

WRAPPER_PREFIXES = ("module.", "_orig_mod.")
UNUSED_BUFFERS = ("img_mean", "img_std")
#: The original backbone's unused image statistics (0–255 scale), restored when converting back.
IMG_MEAN = (73.1584, 82.9090, 72.3924)
IMG_STD = (44.9149, 46.1529, 45.3192)
#: Where a partial checkpoint goes in an EVSS or DAVSS net, recognised by a key it must contain
#: (a part is tried only when the net has a child of that name).
PARTS = (("csrnet", "logits.conv.weight"), ("flownet", "predict_flow2.weight"), ("conet", "predict_cc.weight"),
         ("deeplab", "xception_features.entry_flow_conv1_1.conv.weight"), ("cfnet", "predict_cc.weight"),
         ("dmnet", "conv4.weight"))


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """The checkpoint file does not exist."""


#: Leading bytes of files people pass by mistake, and what to call them.
_SIGNATURES = ((b"\x89PNG", "PNG image"), (b"\xff\xd8\xff", "JPEG image"), (b"\x89HDF", "HDF5 file"),
               (b"PK\x03\x04", "zip archive"), (b"\x1f\x8b", "gzip file"), (b"%PDF", "PDF document"),
               (b"\x80", "pickle"))


def describe_file(path: str | os.PathLike) -> str:
    """What ``path`` looks like from its first bytes: ``"empty file"``, ``"text file"``, ``"PNG image"``, ..."""
    with open(path, "rb") as handle:
        head = handle.read(4096)
    if not head:
        return "empty file"
    for signature, kind in _SIGNATURES:
        if head.startswith(signature):
            return kind
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as err:
        if err.start < len(head) - 4:  # not just a character cut at the end of the sample
            return "binary file"
    return "text file"


def load_file(path: str | os.PathLike, map_location: torch.device | str = "cpu") -> dict:
    """``torch.load(path, weights_only=True)``; :class:`CheckpointError` naming the file and what it
    is when it is not a PyTorch checkpoint (a text file, an image, a truncated download, ...)."""
    name = os.fspath(path)
    if not os.path.isfile(name):
        raise CheckpointNotFoundError(f"checkpoint not found: {name}")
    try:
        state = torch.load(name, map_location=map_location, weights_only=True)
    except Exception as err:
        kind = describe_file(name)
        if kind in ("zip archive", "pickle"):  # a checkpoint container that does not load
            raise CheckpointError(f"{name}: not a loadable PyTorch checkpoint ({kind}, possibly truncated or "
                                  f"holding objects other than tensors: {type(err).__name__}: "
                                  f"{str(err).splitlines()[0] if str(err) else ''})") from err
        raise CheckpointError(f"{name}: not a PyTorch checkpoint: {kind}") from err
    if not isinstance(state, dict):
        raise CheckpointError(f"{name}: not a checkpoint: it holds a {type(state).__name__}, not a dict")
    return state


def _strip_wrappers(key: str) -> str:
    changed = True
    while changed:
        changed = False
        for prefix in WRAPPER_PREFIXES:
            if key.startswith(prefix):
                key, changed = key[len(prefix):], True
    return key


def released_to_clean(state: Mapping[str, Tensor]) -> "OrderedDict[str, Tensor]":
    """Any released layout (or a DDP/compiled wrapper's) → clean keys, duplicates and unused buffers dropped.

    The ``resnet.*`` aliases must equal their ``csrnet.backbone.*`` twins; a file where they differ
    is ambiguous and raises :class:`CheckpointError`.
    """
    state = OrderedDict((_strip_wrappers(k), v) for k, v in state.items())
    aliases = [k for k in state if k.startswith("resnet.")]
    differing = [k for k in aliases if "csrnet.backbone." + k[len("resnet."):] in state
                 and not torch.equal(state[k], state["csrnet.backbone." + k[len("resnet."):]])]
    if differing:
        raise CheckpointError(f"{len(differing)} 'resnet.*' tensors differ from their 'csrnet.backbone.*' copies, "
                              f"e.g. {differing[:3]}; the checkpoint is ambiguous")
    out = OrderedDict()
    for key, value in state.items():
        if key.startswith("resnet."):
            key = "csrnet.backbone." + key[len("resnet."):]
        if key.rsplit(".", 1)[-1] in UNUSED_BUFFERS or key in out:
            continue
        out[key] = value
    return out


def clean_to_released(state: Mapping[str, Tensor], layout: str = "full") -> "OrderedDict[str, Tensor]":
    """Clean EVSS state → a released layout the original code loads: ``full``, ``csrnet`` or ``flownet``."""
    state = released_to_clean(state)
    if layout == "csrnet":
        return OrderedDict(_with_unused_buffers("backbone.", _part(state, "csrnet.")))
    if layout == "flownet":
        return _part(state, "flownet.")
    if layout != "full":
        raise ValueError(f"layout must be 'full', 'csrnet' or 'flownet', not {layout!r}")
    backbone = _with_unused_buffers("", _part(state, "csrnet.backbone."))
    out = OrderedDict(("module.resnet." + k, v) for k, v in backbone)
    out.update(("module.csrnet.backbone." + k, v.clone()) for k, v in backbone)
    out.update(("module." + k, v) for k, v in state.items() if not k.startswith("csrnet.backbone."))
    return out


def _part(state: Mapping[str, Tensor], prefix: str) -> "OrderedDict[str, Tensor]":
    return OrderedDict((k[len(prefix):], v) for k, v in state.items() if k.startswith(prefix))


def _with_unused_buffers(backbone_prefix: str, state: Mapping[str, Tensor]) -> list[tuple[str, Tensor]]:
    buffers = [(backbone_prefix + "img_mean", torch.tensor(IMG_MEAN).view(1, 3, 1, 1)),
               (backbone_prefix + "img_std", torch.tensor(IMG_STD).view(1, 3, 1, 1))]
    return buffers + list(state.items())


def read_state_dict(source: str | os.PathLike | Mapping, map_location: torch.device | str = "cpu") -> "OrderedDict[str, Tensor]":
    """Read a checkpoint file (``weights_only=True``) or take a mapping; unwrap ``{"model": ...}`` /
    ``{"state_dict": ...}`` and return the clean-keyed state dict."""
    name = "<state dict>"
    if not isinstance(source, Mapping):
        name = os.fspath(source)
        source = load_file(name, map_location)
    for wrapper in ("model", "state_dict"):
        if isinstance(source.get(wrapper), Mapping):
            source = source[wrapper]
    tensors = {k: v for k, v in source.items() if isinstance(v, Tensor)}
    if not tensors or len(tensors) != len(source):
        raise CheckpointError(f"{name}: expected a state dict of tensors, found keys {list(source)[:5]}")
    return released_to_clean(tensors)


def load_checkpoint(net: nn.Module, source: str | os.PathLike | Mapping, strict: bool = True) -> str:
    """Load any released or project checkpoint into ``net`` (an EVSS net or one of its parts).

    Accepts the released full EVSS checkpoint (with or without ``module.``), a CSRNet-only or
    FlowNet-only checkpoint (loaded into the matching part of an EVSS net), every released DAVSS
    layout (see the module doc), and this project's checkpoints. Tensors are mapped to the device
    of ``net``. Returns the part that was loaded (``""`` for the whole net, e.g. ``"deeplab,flownet"``
    when a whole-net file leaves out parts the net allows to be absent). Any mismatch raises
    :class:`CheckpointError` listing the missing, unexpected and wrongly shaped keys.
    """
    device = next(net.parameters()).device
    state = read_state_dict(source, map_location=device)
    prefix = _target_prefix(net, state)
    target = net.get_submodule(prefix.rstrip(".")) if prefix else net
    own = target.state_dict()
    absent = [] if prefix else [p for p in getattr(net, "optional_checkpoint_parts", ())
                                if not any(k.startswith(p + ".") for k in state)]
    if absent:
        own = OrderedDict((k, v) for k, v in own.items() if k.split(".", 1)[0] not in absent)
        prefix = ",".join(n for n, _ in net.named_children() if n not in absent)
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
              for k in own if k in state and state[k].shape != own[k].shape]
    if shapes or (strict and (missing or unexpected)):
        where = source if not isinstance(source, Mapping) else "state dict"
        parts = []
        for title, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", shapes)):
            if keys:
                parts.append(f"{title} ({len(keys)}): " + ", ".join(keys[:8]) + (" ..." if len(keys) > 8 else ""))
        hint = _class_count_hint(state, own, getattr(target, "num_classes", None))
        raise CheckpointError(f"checkpoint {where} does not fit {type(target).__name__}"
                              + (f" (loaded into '{prefix.rstrip('.')}')" if prefix else "") + ": "
                              + "; ".join(parts) + hint)
    target.load_state_dict({k: v for k, v in state.items() if k in own}, strict=strict and not absent)
    return prefix.rstrip(".")


def _class_count_hint(state: Mapping[str, Tensor], own: Mapping[str, Tensor], num_classes: int | None) -> str:
    """" (...: pass --num-classes N)" when the shapes differ only by the class count: every differing
    size is the model's minus the same amount (sizes derived from the class count, such as CoNet's
    input channels, move with it) and somewhere the model's size is its class count."""
    if not num_classes:
        return ""
    pairs = set()
    for key, value in own.items():
        if key in state and state[key].shape != value.shape:
            if state[key].dim() != value.dim():
                return ""
            pairs.update((a, b) for a, b in zip(state[key].shape, value.shape) if a != b)
    candidates = {a for a, b in pairs if b == num_classes}
    if len(candidates) != 1:
        return ""
    classes = candidates.pop()
    if any(b - a != num_classes - classes for a, b in pairs):
        return ""
    return (f" (the checkpoint predicts {classes} classes and the model {num_classes}: pass --num-classes "
            f"{classes}, or data.num_classes={classes} in a config)")


def _target_prefix(net: nn.Module, state: Mapping[str, Tensor]) -> str:
    """'' when the checkpoint is for the whole net, else the part of it ('csrnet.', ...) it is for."""
    names = dict(net.named_children())
    if any(k.split(".", 1)[0] in names for k in state):
        return ""
    for part, marker in PARTS:
        if part in names and marker in state:
            return part + "."
    return ""
