"""EVSS and its parts: keyframe CSRNet, FlowNetS, the resample2d warp, CoNet, distortion-map fusion."""
from .checkpoint import CheckpointError, clean_to_released, load_checkpoint, released_to_clean
from .conet import CoNet
from .csrnet import CSRNet
from .evss import EVSS, EVSSStream
from .flownet import FlowNetS
from .warp import warp, warp_backend


def build_evss(num_classes: int = 19, pretrained_backbone: bool = False, **kwargs) -> EVSS:
    """EVSS with random weights (no downloads); ``pretrained_backbone`` takes ImageNet weights from
    torchvision's local cache only. ``kwargs`` go to :class:`EVSS` (``wf``, ``loss_weights``, ...)."""
    return EVSS(num_classes, pretrained_backbone=pretrained_backbone, **kwargs)


__all__ = ["EVSS", "EVSSStream", "CSRNet", "FlowNetS", "CoNet", "build_evss", "load_checkpoint",
           "released_to_clean", "clean_to_released", "CheckpointError", "warp", "warp_backend"]
