"""The training stages, one module each, behind one registry; :func:`train` runs any of them.

    stage        what it trains                                                      module
    csrnet       EVSS stage 1: CSRNet on labelled frames, ETC's losses as options    csrnet.py, etc.py
    flownet      EVSS stage 1b: FlowNetS from OpenCV flow and/or self-supervised     flownet.py
    evss         EVSS stage 2: FlowNet + CoNet with the model's own loss             evss.py
    recurrent    CSRNet + ConvLSTM/ConvGRU on windows of frames (truncated BPTT)     recurrent.py
    davss_dmnet  DAVSS stage 1: the distortion-map network DMNet                     davss.py
    davss        DAVSS stage 2: FlowNet + CFNet, keyframe network and DMNet frozen   davss.py

The :class:`Stage` base class and the helpers several stages share are in base.py, the data of
every stage (all through :func:`dataset.build_dataset`) in data.py.

A stage's config is :data:`engine.trainer.TRAINER_DEFAULTS`, the ``data:`` section
(:data:`engine.stages.data.DATA_DEFAULTS`) and the stage's own :attr:`Stage.defaults`, then a YAML
recipe (``configs/*.yaml``), then ``key=value`` overrides (:func:`resolve_config`). A recipe names
its stage (``stage: evss``).

Every run folder holds config.yaml, env.json, git_revision, last/best/final.pth, TensorBoard
events and, once resumed, history.jsonl; a run resumes from its last.pth automatically
(``train.auto_resume=false`` to refuse) or from an explicit checkpoint, with the same settings
except those :mod:`engine.resume` allows to change (see :class:`engine.trainer.Trainer`).
"""
from __future__ import annotations

import copy
from typing import Iterable

from engine import distributed as ddp
from engine.config import ConfigError, Rule, build_config, load_yaml, validate
from engine.trainer import TRAINER_DEFAULTS, TRAINER_RULES, Trainer

from .base import Stage
from .csrnet import CSRNetStage
from .data import DATA_DEFAULTS, DATA_RULES
from .davss import DAVSSDMNetStage, DAVSSStage
from .evss import EVSSStage
from .flownet import FlowNetStage
from .recurrent import RecurrentStage

__all__ = ["STAGES", "Stage", "defaults", "get_stage", "resolve_config", "rules", "train"]

#: Every stage by name.
STAGES: dict[str, type[Stage]] = {stage.name: stage for stage in (
    CSRNetStage, FlowNetStage, EVSSStage, RecurrentStage, DAVSSDMNetStage, DAVSSStage)}


def get_stage(name: str) -> type[Stage]:
    """The stage class called ``name``; :class:`engine.config.ConfigError` listing the valid names otherwise."""
    if name not in STAGES:
        raise ConfigError(f"unknown stage {name!r}; valid stages: {', '.join(sorted(STAGES))}")
    return STAGES[name]


def defaults(stage: str) -> dict:
    """The default config of ``stage`` (a fresh copy): the trainer's, the data's, then the stage's
    sections (updating a section that exists, adding a new one)."""
    cfg = copy.deepcopy(TRAINER_DEFAULTS)
    cfg["stage"] = stage
    cfg["data"] = copy.deepcopy(DATA_DEFAULTS)
    for section, values in copy.deepcopy(get_stage(stage).defaults).items():
        if isinstance(cfg.get(section), dict):
            cfg[section].update(values)
        else:
            cfg[section] = values
    return cfg


def rules(stage: str) -> dict[str, Rule]:
    """The schema of ``stage``'s config: the trainer's, the data's and the stage's own rules."""
    return {**TRAINER_RULES, **DATA_RULES, **get_stage(stage).rules}


def resolve_config(stage: str | None, config: str | None = None, overrides: Iterable[str] = ()) -> dict:
    """The full config of a run: ``stage``'s defaults, the YAML recipe ``config``, then ``overrides``
    (``key=value`` strings). ``stage`` None takes the stage the recipe names."""
    if stage is None:
        if config is None:
            raise ConfigError("give --stage or a --config that names its stage")
        stage = load_yaml(config).get("stage")
        if stage not in STAGES:
            raise ConfigError(f"{config}: 'stage' must be one of {sorted(STAGES)}, got {stage!r} (or pass --stage)")
    cfg = build_config(defaults(stage), config, overrides)
    if cfg["stage"] != stage:
        raise ConfigError(f"config is for stage {cfg['stage']!r} but --stage {stage} was given")
    return validate(cfg, rules(stage))


def train(stage: str | None, config: str | None = None, overrides: Iterable[str] = (),
          resume: str | None = None, accept_changes: bool = False) -> dict:
    """Train ``stage`` with the config of :func:`resolve_config`, in this process or as one rank of a
    torchrun job; returns the run's summary (``stage``, ``run_dir``, ``iteration``, ``epoch``,
    ``stopped_early``, ``train_wall_s``, and unless stopped early ``metrics``, ``best_score``, ``final``).

    ``resume``: checkpoint to resume from (None: the run folder's last.pth when it exists).
    ``accept_changes``: resume even when the config differs from the checkpoint's beyond what
    :data:`engine.resume.RESUME_MUTABLE` allows (recorded in the run's history.jsonl).
    """
    cfg = resolve_config(stage, config, overrides)
    trainer = Trainer(cfg, get_stage(cfg["stage"])(cfg), resume=resume, accept_changes=accept_changes)
    try:
        return trainer.fit()
    finally:
        ddp.cleanup()
