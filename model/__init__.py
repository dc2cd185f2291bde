"""The networks and methods: EVSS (keyframe CSRNet, FlowNetS, the resample2d warp, CoNet, distortion-map
fusion), DAVSS, the recurrent baselines, and :class:`Stream`, which runs any keyframe method frame by frame."""
from .checkpoint import CheckpointError, clean_to_released, load_checkpoint, released_to_clean
from .conet import CoNet
from .csrnet import CSRNet
from .davss import DAVSS
from .evss import EVSS
from .flownet import FlowNetS
from .recurrent import ConvGRUCell, ConvLSTMCell, RecurrentCSRNet, RecurrentStream
from .schedule import Adaptive, Budget, Fixed, KeyframeSchedule, parse_schedule
from .stream import Stream, StreamingNet, StreamState
from .warp import warp, warp_backend


def build_evss(num_classes: int = 19, pretrained_backbone: bool = False, **kwargs) -> EVSS:
    """EVSS with random weights (no downloads); ``pretrained_backbone`` takes ImageNet weights from
    torchvision's local cache only. ``kwargs`` go to :class:`EVSS` (``wf``, ``loss_weights``, ...)."""
    return EVSS(num_classes, pretrained_backbone=pretrained_backbone, **kwargs)


def build_davss(num_classes: int = 19, align_corners: bool = False, keyframe: str = "deeplabv3plus",
                **kwargs) -> DAVSS:
    """DAVSS with random weights: keyframe network ``"deeplabv3plus"`` (as released) or ``"csrnet"``;
    ``align_corners`` of its resizes (the original: False for Cityscapes evaluation, True for CamVid
    and training). ``kwargs`` go to :class:`DAVSS` (``ignore_index``, ``cfnet_loss_broadcast``)."""
    return DAVSS(num_classes, align_corners=align_corners, keyframe=keyframe, **kwargs)


def build_recurrent(num_classes: int = 19, cell: str = "convlstm", csrnet: str | None = None, **kwargs) -> RecurrentCSRNet:
    """CSRNet with a ConvLSTM (``cell="convlstm"``) or ConvGRU (``"convgru"``) on its 1/32 feature;
    ``csrnet`` (a stage-1 or released CSRNet checkpoint) initialises the keyframe network.
    ``kwargs`` go to :class:`RecurrentCSRNet` (``hidden_channels``, ``kernel_size``)."""
    net = RecurrentCSRNet(num_classes, cell=cell, **kwargs)
    if csrnet is not None:
        load_checkpoint(net.csrnet, csrnet)
    return net


__all__ = ["EVSS", "Stream", "StreamingNet", "StreamState", "KeyframeSchedule", "Fixed", "Adaptive", "Budget",
           "parse_schedule", "CSRNet", "FlowNetS", "CoNet", "build_evss", "load_checkpoint",
           "released_to_clean", "clean_to_released", "CheckpointError", "warp", "warp_backend",
           "DAVSS", "build_davss",
           "RecurrentCSRNet", "RecurrentStream", "ConvLSTMCell", "ConvGRUCell", "build_recurrent"]
