"""What a training stage supplies (:class:`Stage`) and the helpers several stages share.

A stage names its config defaults, model, optimiser groups, data, the loss of one batch and its
evaluation; :class:`engine.trainer.Trainer` runs any stage.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from dataset import CAMVID, CITYSCAPES, ClassSet, colorize
from model.blocks import upsample4
from model.fusion import crop

from engine import distributed as ddp
from engine.config import POSITIVE_INT, Rule, list_of


#: ``eval.distances``: keyframe distances to evaluate at.
DISTANCES = list_of(POSITIVE_INT)


class Stage:
    """One training stage; subclass, set :attr:`name`, :attr:`score_name`, :attr:`defaults`, override."""

    #: the stage's name (``--stage``, ``stage:`` in a config, ``stage`` in its checkpoints)
    name = "stage"
    #: key of the evaluation result whose increase makes ``best.pth``
    score_name = "score"
    #: the stage's config sections on top of the trainer's and the data defaults (see
    #: :func:`engine.stages.defaults`): a section that exists is updated, a new one is added
    defaults: dict[str, dict] = {}
    #: type and range of the stage's own keys (dotted, see :func:`engine.config.validate`); the
    #: trainer's and the data's are in :data:`engine.trainer.TRAINER_RULES` and
    #: :data:`engine.stages.data.DATA_RULES`
    rules: dict[str, Rule] = {}

    def __init__(self, cfg: dict):
        self.cfg = cfg

    def build_model(self) -> nn.Module:
        raise NotImplementedError

    def param_groups(self, model: nn.Module) -> list[dict]:
        """Optimizer groups: dicts with ``params`` and optionally ``lr``, ``weight_decay``, ``name``."""
        return [{"params": [p for p in model.parameters() if p.requires_grad], "name": "all"}]

    def train_dataset(self) -> Dataset:
        raise NotImplementedError

    def val_dataset(self) -> Dataset | None:
        return None

    def train_step(self, model: nn.Module, batch: dict) -> dict[str, Tensor]:
        """Losses of one batch (already on the device); must contain the scalar ``loss``."""
        raise NotImplementedError

    def evaluate(self, model: nn.Module, dataset: Dataset, device: torch.device) -> dict:
        """``{"metrics": {name: float}, "images": {name: 3×H×W float in [0, 1]}}``; metrics must hold
        :attr:`score_name` (higher is better). Called on every rank with the unwrapped model in eval
        mode: each rank scores its share (:func:`val_indices`) and the metrics are reduced."""
        return {"metrics": {}, "images": {}}


def encoder_decoder_param_groups(model: nn.Module, optim: Mapping[str, Any]) -> list[dict]:
    """Two optimizer groups for a model with ``encoder_parameters()`` and ``decoder_parameters()`` (a
    pretrained backbone and a new head): the encoder's learning rate and weight decay are the
    ``optim`` ones scaled by ``optim["backbone_factor"]``, the decoder's are unscaled."""
    f = float(optim["backbone_factor"])
    return [{"params": model.encoder_parameters(), "lr": optim["lr"] * f, "weight_decay": optim["weight_decay"] * f,
             "name": "encoder"},
            {"params": model.decoder_parameters(), "lr": optim["lr"], "weight_decay": optim["weight_decay"],
             "name": "decoder"}]


def val_indices(dataset: Dataset, limit: int | None) -> range:
    """This rank's share (every world-size-th index) of the first ``limit`` samples (None: all)."""
    total = len(dataset) if limit is None else min(int(limit), len(dataset))
    info = ddp.info()
    return range(info.rank, total, info.world_size)


def class_set(cfg: dict) -> ClassSet:
    """The class set of the config's data: CamVid's 11 classes or Cityscapes' 19."""
    return CAMVID if cfg["data"]["num_classes"] == 11 else CITYSCAPES


def color(pred: Tensor, cfg: dict) -> Tensor:
    """Class map H×W (ids of :func:`class_set`) → 3×H×W float RGB in [0, 1] (TensorBoard images)."""
    return torch.from_numpy(colorize(pred.cpu(), class_set(cfg))).permute(2, 0, 1).float() / 255


def full_res(logits_q: Tensor, size: Sequence[int]) -> Tensor:
    """1/4-grid logits B×C×h×w → B×C×H×W at ``size`` = (H, W): ×4 bilinear, then cropped (EVSS's)."""
    return crop(upsample4(logits_q), tuple(size))
