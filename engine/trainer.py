"""The training loop every stage shares.

A *stage* (:class:`engine.stages.base.Stage`, one module per stage under ``engine/stages/``)
supplies the model, its parameter groups, the data, the loss of one batch and an evaluation hook;
:class:`Trainer` does the rest: distributed set-up, Adam + cosine schedule, mixed precision,
checkpoints with full resume state, TensorBoard, progress, and the non-finite-loss stop.

Run folder::

    config.yaml   resolved config          env.json     collect_env()      git_revision
    last.pth      latest state             best.pth     best evaluation    final.pth   end of training
    tb/           TensorBoard events       log.txt      rank-0 log lines   metrics.jsonl evaluations
    history.jsonl every resume and the config changes it brought (see engine.resume)

Checkpoints are dicts of tensors, numbers, strings, lists and dicts only (``torch.load(...,
weights_only=True)`` reads them): ``model`` (clean state dict), ``optimizer``, ``scheduler``,
``scaler``, ``epoch``, ``epoch_step``, ``iteration``, ``best_score``, ``rng``, ``config`` and
``history``.

Faults: a resume whose config differs from the checkpoint's outside the allowed keys stops (see
:mod:`engine.resume`); stale temporaries of an interrupted write are removed on start; SIGTERM (a
cluster scheduler's notice) saves ``last.pth`` after the current iteration and ends with
:class:`TrainingInterrupted`; a failed checkpoint write leaves the previous one intact
(:class:`engine.atomic.WriteError`).
"""
from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import signal
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from dataset import sample_counts
from model.checkpoint import load_file
from model.errors import CheckpointError, UserError, WriteError

from . import distributed as ddp
from .atomic import atomic_torch_save, atomic_write_json, atomic_write_text
from .config import POSITIVE_INT, ConfigError, WEIGHT, Rule, integer, list_of, number, one_of, plain, save_config, text
from .environment import collect_env, git_revision
from .resume import clean_stale_temporaries, resume_entry
from .rng import rng_state, seed_everything, set_deterministic, set_rng_state
from .schedules import CosineFactor, HalfStepFactor

if TYPE_CHECKING:  # the stages import this module (engine.stages.train runs a Trainer)
    from .stages.base import Stage

log = logging.getLogger("evss.train")

#: Defaults every stage shares; a stage adds its own sections (see :func:`engine.stages.defaults`).
TRAINER_DEFAULTS: dict[str, Any] = {
    "seed": 666,
    "deterministic": False,
    "device": "auto",           # auto | cpu | cuda
    "threads": None,            # torch intra-op CPU threads (None: torch's default / OMP_NUM_THREADS)
    "out_dir": "runs/train",
    "train": {
        "epochs": 100,
        "iters": None,            # total iterations (defines the schedule); None: epochs × batches per epoch
        "stop_after": None,       # stop (as if interrupted) once this global iteration is reached
        "batch_size": 8,          # per process
        "workers": 4,
        "log_every": 10,          # iterations
        "ckpt_every": 1,          # epochs (0: off)
        "ckpt_every_iters": None,
        "eval_every": 5,          # epochs (0: off)
        "eval_every_iters": None,
        "eval_first": True,       # also evaluate after the first epoch (as the original)
        "eval_final": True,
        "amp": "none",            # none | bf16 | fp16 (CUDA only)
        "channels_last": False,
        "compile": False,
        "freeze_bn": False,       # BatchNorm layers in eval mode (running statistics) while training
        "sync_bn": True,          # SyncBatchNorm when distributed on CUDA
        "find_unused_parameters": False,
        "grad_clip": None,
        "auto_resume": True,      # resume from the run folder's last.pth when it exists
        "tb_images": 2,           # evaluation images written to TensorBoard (0: none)
        "progress": True,
    },
    "optim": {
        "lr": 1e-4,
        "betas": [0.9, 0.999],
        "weight_decay": 0.0,
        "schedule": "cosine",     # cosine | constant | step (×0.1 once more than half is done, DAVSS)
        "schedule_unit": "iter",  # iter | epoch
        "min_lr": 1e-6,
    },
}


#: Type and range of every trainer key (see :func:`engine.config.validate`).
TRAINER_RULES: dict[str, Rule] = {
    "seed": integer(min=0),
    "device": one_of("auto", "cpu", "cuda"),
    "threads": integer(min=1, null=True),
    "out_dir": text(),
    "train.epochs": POSITIVE_INT,
    "train.iters": integer(min=1, null=True),
    "train.stop_after": integer(min=1, null=True),
    "train.batch_size": POSITIVE_INT,
    "train.workers": integer(min=0),
    "train.log_every": integer(min=0),
    "train.ckpt_every": integer(min=0),
    "train.ckpt_every_iters": integer(min=0, null=True),
    "train.eval_every": integer(min=0),
    "train.eval_every_iters": integer(min=0, null=True),
    "train.amp": one_of("none", "bf16", "fp16"),
    "train.grad_clip": number(above=0.0, null=True),
    "train.tb_images": integer(min=0),
    "optim.lr": number(above=0.0),
    "optim.betas": list_of(number(0.0, 1.0), length=2),
    "optim.weight_decay": WEIGHT,
    "optim.schedule": one_of("cosine", "constant", "step"),
    "optim.schedule_unit": one_of("iter", "epoch"),
    "optim.min_lr": WEIGHT,
}


class NonFiniteLossError(UserError, RuntimeError):
    """A loss became NaN or infinite; the message names the iteration, the samples and the last checkpoint."""

    exit_code = 5


class TrainingInterrupted(UserError):
    """SIGTERM stopped training after a resumable ``last.pth`` was saved; rerunning resumes."""

    exit_code = 128 + signal.SIGTERM


# ---------------------------------------------------------------------------------------------- helpers
def set_train_mode(model: nn.Module, freeze_bn: bool) -> None:
    model.train()
    if freeze_bn:
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()


def to_device(batch: Any, device: torch.device, channels_last: bool = False) -> Any:
    if isinstance(batch, Tensor):
        batch = batch.to(device, non_blocking=True)
        if channels_last and batch.dim() == 4 and batch.is_floating_point():
            batch = batch.contiguous(memory_format=torch.channels_last)
        return batch
    if isinstance(batch, Mapping):
        return {k: to_device(v, device, channels_last) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)) and batch and isinstance(batch[0], Tensor):
        return type(batch)(to_device(v, device, channels_last) for v in batch)
    return batch


def batch_ids(batch: Mapping) -> list[str]:
    ids = batch.get("id", [])
    if isinstance(ids, str):
        return [ids]
    return [str(i) for i in ids]


def load_training_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict:
    """A training checkpoint (``weights_only``); :class:`model.errors.CheckpointError` for anything else."""
    state = load_file(path, map_location)
    missing = [key for key in ("model", "optimizer", "scheduler", "iteration", "rng") if key not in state]
    if missing:
        raise CheckpointError(f"{path}: not a training checkpoint of this project (no {', '.join(missing)}); "
                              f"to start from its weights use model.init=PATH instead of resuming")
    return state


def _exit_quietly_on_sigterm(worker_id: int) -> None:
    """DataLoader workers end with status 0 on SIGTERM. A scheduler signals every process of a job; a
    worker killed by the signal would make torch raise in the main process at an arbitrary point
    (its SIGCHLD handler), before the main process could save a checkpoint between iterations."""
    signal.signal(signal.SIGTERM, lambda signum, frame: os._exit(0))


# ---------------------------------------------------------------------------------------------- trainer
class Trainer:
    """Train ``stage`` with config ``cfg`` (see :data:`TRAINER_DEFAULTS`) into ``cfg["out_dir"]``.

    Args:
        resume: checkpoint to resume from; None resumes from ``out_dir/last.pth`` when it exists and
            ``train.auto_resume`` is true.
        accept_changes: resume even when settings outside :data:`engine.resume.RESUME_MUTABLE`
            differ from the checkpoint's (the change is recorded in the run's history).
    """

    def __init__(self, cfg: dict, stage: Stage, resume: str | os.PathLike | None = None,
                 accept_changes: bool = False):
        self.cfg = cfg
        self.stage = stage
        self.resume_path = resume
        self.accept_changes = accept_changes
        self.resumed: tuple[str, dict] | None = None   # (path, state) of the checkpoint to resume
        self.history: list[dict] = []
        self.terminate = False                          # set by SIGTERM
        self.run_dir = Path(cfg["out_dir"])
        self.tcfg = cfg["train"]
        self.ocfg = cfg["optim"]
        self.last_checkpoint: str | None = None
        self.writer = None
        self._log_file = None

    # ------------------------------------------------------------------ set-up
    def _setup_run_dir(self) -> None:
        if not self.dist.is_main:
            return
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise WriteError(f"out_dir {self.run_dir}: cannot create the run folder ({err.strerror or err})") from err
        stale = clean_stale_temporaries(self.run_dir)
        save_config(self.cfg, self.run_dir / "config.yaml")
        atomic_write_json(collect_env(), self.run_dir / "env.json")
        atomic_write_text(git_revision() + "\n", self.run_dir / "git_revision")
        if self.history:
            atomic_write_text("".join(json.dumps(entry) + "\n" for entry in self.history),
                              self.run_dir / "history.jsonl")
        self._log_file = open(self.run_dir / "log.txt", "a")
        if stale:
            self.log(f"removed {len(stale)} temporary file(s) left by an interrupted write: "
                     + ", ".join(p.name for p in stale))
        try:
            from torch.utils.tensorboard import SummaryWriter  # optional: slow to import, training goes on without it
            self.writer = SummaryWriter(str(self.run_dir / "tb"))
        except Exception as err:  # tensorboard missing or broken: train anyway
            self.log(f"TensorBoard disabled: {type(err).__name__}: {err}")

    def log(self, message: str) -> None:
        if not self.dist.is_main:
            return
        line = f"[{time.strftime('%H:%M:%S')}] [{self.stage.name}] {message}"
        print(line, file=sys.stderr, flush=True)
        if self._log_file is not None:
            self._log_file.write(line + "\n")
            self._log_file.flush()

    def _amp(self):
        mode = self.tcfg["amp"]
        if mode == "none" or self.dist.device.type != "cuda":
            return contextlib.nullcontext()
        return torch.autocast("cuda", dtype=torch.bfloat16 if mode == "bf16" else torch.float16)

    def _build_optimizer(self, model: nn.Module, iters_per_epoch: int):
        groups = self.stage.param_groups(model)
        for g in groups:
            g.setdefault("lr", self.ocfg["lr"])
            g.setdefault("weight_decay", self.ocfg["weight_decay"])
            g["params"] = [p for p in g["params"] if p.requires_grad]
        groups = [g for g in groups if g["params"]]
        if not groups:
            raise ConfigError(f"stage {self.stage.name}: no trainable parameters")
        optimizer = torch.optim.Adam(groups, betas=tuple(self.ocfg["betas"]))
        total = self.total_iters if self.ocfg["schedule_unit"] == "iter" else self.total_epochs
        if self.ocfg["schedule"] == "cosine":
            lambdas = [CosineFactor(g["lr"], self.ocfg["min_lr"], total) for g in groups]
        elif self.ocfg["schedule"] == "constant":
            lambdas = [lambda _: 1.0 for _ in groups]
        else:  # "step"
            lambdas = [HalfStepFactor(total) for _ in groups]
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambdas)
        return optimizer, scheduler

    def _loader(self, dataset: Dataset) -> tuple[DataLoader, ddp.ResumableDistributedSampler]:
        sampler = ddp.ResumableDistributedSampler(dataset, self.dist, shuffle=True, seed=self.cfg["seed"],
                                                  drop_last=True)
        workers = int(self.tcfg["workers"])
        loader = DataLoader(dataset, batch_size=self.tcfg["batch_size"], sampler=sampler, num_workers=workers,
                            pin_memory=self.dist.device.type == "cuda", drop_last=True,
                            persistent_workers=False, worker_init_fn=_exit_quietly_on_sigterm if workers else None)
        return loader, sampler

    # ------------------------------------------------------------------ checkpoints
    def _state(self) -> dict:
        return {
            "stage": self.stage.name,
            "model": ddp.unwrap(self.model).state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else {},
            "epoch": self.epoch,
            "epoch_step": self.epoch_step,
            "iteration": self.iteration,
            "best_score": self.best_score,
            "metrics": self.last_metrics,
            "rng": rng_state(),
            "config": plain(self.cfg),
            "history": self.history,
        }

    def save(self, name: str, state: dict | None = None) -> None:
        if not self.dist.is_main:
            return
        path = self.run_dir / f"{name}.pth"
        atomic_torch_save(state if state is not None else self._state(), path)
        if name in ("last", "final"):
            self.last_checkpoint = str(path)
        self.log(f"saved {path} (epoch {self.epoch}, iteration {self.iteration})")

    def _read_resume(self) -> None:
        """Load the checkpoint to resume (if any) and check its config against this run's, before
        anything in the run folder is rewritten."""
        path = self.resume_path
        if path is None and self.tcfg["auto_resume"] and (self.run_dir / "last.pth").is_file():
            path = self.run_dir / "last.pth"
        if path is None:
            return
        state = load_training_checkpoint(path)
        if state.get("stage") not in (None, self.stage.name):
            raise CheckpointError(f"{path} is a checkpoint of stage {state.get('stage')!r}, not {self.stage.name!r}")
        entry = resume_entry(path, state, plain(self.cfg), self.accept_changes)
        self.history = list(state.get("history") or []) + [entry]
        self.resumed = (str(path), state)

    def _resume(self) -> None:
        """Restore the checkpoint read by :meth:`_read_resume`. The optimiser's hyperparameters and
        the schedule come from this run's config (equal to the checkpoint's unless changed with
        ``--resume-with-changes`` or by extending ``train.iters``/``train.epochs``)."""
        if self.resumed is None:
            return
        path, state = self.resumed
        ddp.unwrap(self.model).load_state_dict(state["model"])
        configured = [{k: g[k] for k in ("initial_lr", "betas", "weight_decay")} for g in self.optimizer.param_groups]
        self.optimizer.load_state_dict(state["optimizer"])
        for group, values in zip(self.optimizer.param_groups, configured):
            group.update(values)
        schedule = {k: v for k, v in state["scheduler"].items() if k != "base_lrs"}
        schedule["lr_lambdas"] = [None] * len(self.scheduler.lr_lambdas)  # keep the config's factors
        self.scheduler.load_state_dict(schedule)
        for group, base, factor in zip(self.optimizer.param_groups, self.scheduler.base_lrs,
                                       self.scheduler.lr_lambdas):
            group["lr"] = base * factor(self.scheduler.last_epoch)
        if state.get("scaler") and self.scaler.is_enabled():
            self.scaler.load_state_dict(state["scaler"])
        self.epoch, self.epoch_step, self.iteration = state["epoch"], state["epoch_step"], state["iteration"]
        self.best_score = state.get("best_score")
        self.last_metrics = state.get("metrics") or {}
        set_rng_state(state["rng"])
        self.last_checkpoint = str(path)
        changes = self.history[-1]["changes"]
        self.log(f"resumed from {path}: epoch {self.epoch}, step {self.epoch_step} of the epoch, "
                 f"iteration {self.iteration}" + ("; changed settings (" + self.history[-1]["accepted"] + "): "
                                                  + ", ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in changes.items())
                                                  if changes else ""))

    # ------------------------------------------------------------------ evaluation
    def evaluate(self) -> dict:
        """Run the stage's evaluation on every rank (it shards and reduces), log and keep ``best`` on rank 0."""
        metrics: dict = {}
        if self.val_set is not None:
            net = ddp.unwrap(self.model)
            net.eval()
            start = time.perf_counter()
            with torch.no_grad():
                result = self.stage.evaluate(net, self.val_set, self.dist.device)
            metrics = {k: float(v) for k, v in result.get("metrics", {}).items()}
            counts = sample_counts(self.val_set).limited(self.cfg["data"]["val_limit"], "left out by data.val_limit")
            self.log(f"evaluation at epoch {self.epoch}, iteration {self.iteration} "
                     f"({time.perf_counter() - start:.1f} s, {counts.summary()}): "
                     + ", ".join(f"{k}={v:.4f}" for k, v in metrics.items()))
            if self.dist.is_main:
                if self.writer is not None:
                    for k, v in metrics.items():
                        self.writer.add_scalar(f"val/{k}", v, self.iteration)
                    for k, img in list(result.get("images", {}).items())[:max(0, 3 * int(self.tcfg["tb_images"]))]:
                        self.writer.add_image(f"val/{k}", img.detach().float().cpu().clamp(0, 1), self.iteration)
                with open(self.run_dir / "metrics.jsonl", "a") as handle:
                    handle.write(json.dumps({"epoch": self.epoch, "iteration": self.iteration, **metrics,
                                             **counts.as_json()}) + "\n")
            self.last_metrics = metrics
            score = metrics.get(self.stage.score_name)
            if score is not None and math.isfinite(score) and (self.best_score is None or score > self.best_score):
                self.best_score = score
                self.save("best")
        ddp.barrier()
        set_train_mode(self.model, self.tcfg["freeze_bn"])
        return metrics

    # ------------------------------------------------------------------ the loop
    def _check_finite(self, loss: Tensor, batch: Mapping) -> None:
        bad = not bool(torch.isfinite(loss.detach()).all())
        if not ddp.any_true(bad):
            return
        ids = batch_ids(batch)
        if self.dist.distributed:
            gathered: list = [None] * self.dist.world_size
            torch.distributed.all_gather_object(gathered, ids)
            ids = [i for part in gathered for i in part]
        message = (f"stage {self.stage.name}: non-finite loss ({loss.detach().float().item()} on rank "
                   f"{self.dist.rank}) at iteration {self.iteration + 1} (epoch {self.epoch}, step "
                   f"{self.epoch_step + 1} of the epoch); batch sample ids: {ids}; last good checkpoint: "
                   f"{self.last_checkpoint or 'none (nothing saved yet)'}")
        self.log(message)
        raise NonFiniteLossError(message)

    def _should(self, every: int | None, count: int) -> bool:
        return bool(every) and count % int(every) == 0

    def fit(self) -> dict:
        cfg = self.cfg
        if cfg["threads"]:
            torch.set_num_threads(int(cfg["threads"]))
        self.dist = ddp.init_distributed(cfg["device"])
        seed_everything(int(cfg["seed"]))
        set_deterministic(bool(cfg["deterministic"]))
        self._read_resume()
        self._setup_run_dir()
        handler = None
        if threading.current_thread() is threading.main_thread():
            handler = signal.signal(signal.SIGTERM, self._on_sigterm)
        try:
            return self._fit()
        finally:
            if handler is not None:
                signal.signal(signal.SIGTERM, handler)
            if self.writer is not None:
                self.writer.close()
            if self._log_file is not None:
                self._log_file.close()

    def _already_complete(self) -> dict:
        """The summary of a resumed run that has nothing left to train: nothing is trained, evaluated
        or rewritten (``final.pth`` is written only when a crash left it missing)."""
        path, state = self.resumed
        self.log(f"{path} has completed all {self.total_iters} iterations: nothing to train (raise train.iters or "
                 f"train.epochs to extend the run)")
        if not (self.run_dir / "final.pth").is_file():
            self.save("final", state)
        return {"stage": self.stage.name, "run_dir": str(self.run_dir), "iteration": self.iteration,
                "epoch": self.epoch, "stopped_early": False, "train_wall_s": 0.0, "already_complete": True,
                "metrics": self.last_metrics, "best_score": self.best_score, "final": str(self.run_dir / "final.pth")}

    def _batches(self, loader: DataLoader):
        """The loader's batches; when SIGTERM has ended the workers (this process got it too), the
        epoch ends early instead of raising, and the loop saves a checkpoint."""
        batches = iter(loader)
        while True:
            try:
                batch = next(batches)
            except StopIteration:
                return
            except RuntimeError:
                if self.terminate:
                    return
                raise
            yield batch

    def _on_sigterm(self, signum, frame) -> None:
        if not self.terminate:
            self.log("SIGTERM: stopping after this iteration with a resumable checkpoint")
        self.terminate = True

    def _fit(self) -> dict:
        tcfg = self.tcfg
        device = self.dist.device
        train_set = self.stage.train_dataset()
        self.val_set = self.stage.val_dataset()
        loader, sampler = self._loader(train_set)
        iters_per_epoch = len(sampler) // tcfg["batch_size"]
        if iters_per_epoch < 1:
            raise ConfigError(f"{len(train_set)} training samples give no full batch of train.batch_size={tcfg['batch_size']} "
                               f"per process ({self.dist.world_size} processes)")
        if tcfg["iters"]:
            self.total_iters = int(tcfg["iters"])
            self.total_epochs = math.ceil(self.total_iters / iters_per_epoch)
        else:
            self.total_epochs = int(tcfg["epochs"])
            self.total_iters = self.total_epochs * iters_per_epoch

        model = self.stage.build_model().to(device)
        if tcfg["channels_last"]:
            model = model.to(memory_format=torch.channels_last)
        if tcfg["sync_bn"]:
            model = ddp.convert_sync_batchnorm(model, self.dist)
        self.model = model
        self.optimizer, self.scheduler = self._build_optimizer(model, iters_per_epoch)
        self.scaler = torch.amp.GradScaler("cuda", enabled=(tcfg["amp"] == "fp16" and device.type == "cuda"))
        self.epoch = self.epoch_step = self.iteration = 0
        self.best_score: float | None = None
        self.last_metrics: dict = {}
        self._resume()
        if self.resumed is not None and self.iteration >= self.total_iters:
            return self._already_complete()
        n_params = sum(p.numel() for g in self.optimizer.param_groups for p in g["params"])
        self.log(f"{len(train_set)} training samples, {iters_per_epoch} iterations per epoch, "
                 f"{self.total_epochs} epochs / {self.total_iters} iterations, {self.dist.world_size} process(es) "
                 f"on {device}, {n_params / 1e6:.2f} M trained parameters, run folder {self.run_dir}")

        self.model = ddp.wrap_ddp(model, self.dist, bool(tcfg["find_unused_parameters"]))
        if tcfg["compile"]:
            self.model = torch.compile(self.model)
        set_train_mode(self.model, tcfg["freeze_bn"])
        epoch_unit = self.ocfg["schedule_unit"] == "epoch"
        stop_after = tcfg["stop_after"]
        progress = None
        if self.dist.is_main and tcfg["progress"]:
            progress = tqdm(total=self.total_iters, initial=self.iteration, desc=self.stage.name, dynamic_ncols=True,
                            file=sys.stderr, mininterval=2.0)
        stopped = interrupted = False
        t_start = time.perf_counter()
        while self.iteration < self.total_iters and (tcfg["iters"] or self.epoch < self.total_epochs):
            if epoch_unit and self.epoch_step == 0:
                # the original steps CosineAnnealingLR at the start of every epoch
                with warnings.catch_warnings():
                    warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step")
                    self.scheduler.step()
            sampler.set_epoch(self.epoch, start=self.epoch_step * tcfg["batch_size"])
            if hasattr(train_set, "set_epoch"):
                train_set.set_epoch(self.epoch)
            for batch in self._batches(loader):
                batch = to_device(batch, device, tcfg["channels_last"])
                with self._amp():
                    out = self.stage.train_step(self.model, batch)
                loss = out["loss"]
                self._check_finite(loss, batch)
                self.scaler.scale(loss).backward()
                if tcfg["grad_clip"]:
                    self.scaler.unscale_(self.optimizer)
                    torch.nn.utils.clip_grad_norm_([p for g in self.optimizer.param_groups for p in g["params"]],
                                                   float(tcfg["grad_clip"]))
                self.scaler.step(self.optimizer)
                self.scaler.update()
                self.optimizer.zero_grad(set_to_none=True)
                if not epoch_unit:
                    self.scheduler.step()
                self.iteration += 1
                self.epoch_step += 1
                if progress is not None:
                    progress.update(1)
                if self._should(tcfg["log_every"], self.iteration) or self.iteration == 1:
                    scalars = {k: float(v.detach().float().mean()) for k, v in out.items()
                               if isinstance(v, Tensor) and v.numel() == 1 and k.startswith("loss")}
                    scalars = ddp.all_reduce_mean(scalars)
                    if self.dist.is_main:
                        lrs = {g.get("name", str(i)): g["lr"] for i, g in enumerate(self.optimizer.param_groups)}
                        if self.writer is not None:
                            for k, v in scalars.items():
                                self.writer.add_scalar(f"train/{k}", v, self.iteration)
                            for k, v in lrs.items():
                                self.writer.add_scalar(f"lr/{k}", v, self.iteration)
                        if progress is not None:
                            progress.set_postfix(loss=f"{scalars.get('loss', float('nan')):.4f}", epoch=self.epoch)
                        else:
                            self.log(f"iteration {self.iteration}/{self.total_iters} " +
                                     " ".join(f"{k}={v:.4f}" for k, v in scalars.items()))
                if self._should(tcfg["ckpt_every_iters"], self.iteration):
                    self.save("last")
                if self._should(tcfg["eval_every_iters"], self.iteration):
                    self.evaluate()
                interrupted = ddp.any_true(self.terminate)  # every rank stops at the same iteration
                asked = stop_after is not None and self.iteration >= int(stop_after)
                if (interrupted or asked) and self.iteration < self.total_iters:
                    stopped = True
                    break
                if self.iteration >= self.total_iters:
                    break
            if self.terminate and not stopped:  # the workers ended before the next batch
                stopped = interrupted = True
            if stopped:
                self.save("last")
                if interrupted:
                    raise TrainingInterrupted(f"stopped by SIGTERM at iteration {self.iteration} of {self.total_iters}; "
                                              f"{self.run_dir / 'last.pth'} holds the state: run the same command "
                                              f"again to resume")
                break
            if self.epoch_step >= iters_per_epoch or self.iteration >= self.total_iters:
                self.epoch += 1
                self.epoch_step = 0
                done = self.iteration >= self.total_iters or self.epoch >= self.total_epochs
                if (self._should(tcfg["eval_every"], self.epoch) or (tcfg["eval_first"] and self.epoch == 1)) \
                        and not (done and tcfg["eval_final"]):
                    self.evaluate()
                if self._should(tcfg["ckpt_every"], self.epoch) and not done:
                    self.save("last")
        if progress is not None:
            progress.close()
        wall = time.perf_counter() - t_start
        summary = {"stage": self.stage.name, "run_dir": str(self.run_dir), "iteration": self.iteration,
                   "epoch": self.epoch, "stopped_early": stopped, "train_wall_s": round(wall, 2)}
        if not stopped:
            if tcfg["eval_final"]:
                self.evaluate()
            state = self._state()
            self.save("last", state)
            self.save("final", state)
            summary.update(metrics=self.last_metrics, best_score=self.best_score,
                           final=str(self.run_dir / "final.pth"))
        ddp.barrier()
        self.log("done: " + json.dumps(summary))
        return summary
