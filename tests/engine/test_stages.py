"""The stage registry, configs, and the trainer running each stage on tiny synthetic data (32×64
frames, a few iterations each)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from engine import distributed
from engine.config import ConfigError, build_config, parse_override
from engine.stages import STAGES, defaults, get_stage, resolve_config, train
from engine.stages.csrnet import CSRNetStage
from engine.trainer import NonFiniteLossError, Trainer
from model import CSRNet, load_checkpoint
from model.recurrent import RecurrentCSRNet

ROOT = Path(__file__).resolve().parents[2]


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny(out_dir, clip_len=4, train_clips=1, val_clips=1, batch=2):
    return [f"out_dir={out_dir}", "device=cpu", "data.synthetic.height=32", "data.synthetic.width=64",
            f"data.synthetic.train_clips={train_clips}", f"data.synthetic.val_clips={val_clips}",
            f"data.synthetic.clip_len={clip_len}", "data.val_limit=1", f"train.batch_size={batch}",
            "train.workers=0", "train.progress=false", "train.log_every=1", "train.tb_images=1"]


def load(path):
    return torch.load(path, map_location="cpu", weights_only=True)


def assert_same_weights(a: dict, b: dict, atol=0.0, rtol=0.0):
    assert a.keys() == b.keys()
    for k in a:
        if a[k].is_floating_point():
            torch.testing.assert_close(a[k], b[k], atol=atol, rtol=rtol, msg=lambda m: f"{k}: {m}")
        else:
            assert torch.equal(a[k], b[k]), k


# ------------------------------------------------------------------------------------------- config
def test_config_overrides(tmp_path):
    csrnet_defaults = defaults("csrnet")
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({"optim": {"lr": "2e-4"}, "data": {"crop": [16, 32]}}))
    cfg = build_config(csrnet_defaults, recipe, ["optim.lr=1e-4", "train.amp=bf16", "data.scale=[0.5, 1.5]",
                                                 "train.iters=7", "train.freeze_bn=true", "data.offsets=null",
                                                 "data.synthetic.height=48"])
    assert cfg["optim"]["lr"] == pytest.approx(1e-4) and isinstance(cfg["optim"]["lr"], float)
    assert cfg["data"]["crop"] == [16, 32] and cfg["data"]["scale"] == [0.5, 1.5]
    assert cfg["train"]["amp"] == "bf16" and cfg["train"]["iters"] == 7 and cfg["train"]["freeze_bn"] is True
    assert cfg["data"]["synthetic"]["height"] == 48
    assert csrnet_defaults["optim"]["lr"] == pytest.approx(4e-4)  # defaults untouched
    assert parse_override("a.b=[1, 5, 9]") == ("a.b", [1, 5, 9])

    with pytest.raises(ConfigError, match=r"'optim\.lrr'.*did you mean 'optim\.lr'"):
        build_config(csrnet_defaults, None, ["optim.lrr=1"])
    with pytest.raises(ConfigError, match=r"'nosuch\.key'"):
        build_config(csrnet_defaults, None, ["nosuch.key=1"])
    with pytest.raises(ConfigError, match="key=value"):
        build_config(csrnet_defaults, None, ["optim.lr"])
    with pytest.raises(ConfigError, match="expects a number"):
        build_config(csrnet_defaults, None, ["optim.lr=fast"])
    with pytest.raises(ConfigError, match="is a section"):
        build_config(csrnet_defaults, None, ["optim=3"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  epoch: 3\n")
    with pytest.raises(ConfigError, match=r"'train\.epoch'.*bad\.yaml.*'train\.epochs'"):
        build_config(csrnet_defaults, bad)
    # stage-specific sections exist only for their stage
    with pytest.raises(ConfigError, match=r"'flow\.mode'"):
        build_config(csrnet_defaults, None, ["flow.mode=both"])


def test_every_shipped_config_resolves():
    for path in sorted((ROOT / "configs").glob("*.yaml")):
        cfg = resolve_config(None, str(path), [])
        assert cfg["stage"] in STAGES, path


def test_registry_holds_every_stage_and_names_the_valid_ones():
    names = ["csrnet", "flownet", "evss", "recurrent", "davss_dmnet", "davss"]
    assert sorted(STAGES) == sorted(names)
    for name in names:
        assert get_stage(name).name == name
        assert defaults(name)["stage"] == name
    with pytest.raises(ConfigError, match="unknown stage 'nope'; valid stages: " + ", ".join(sorted(names))):
        get_stage("nope")
    with pytest.raises(ConfigError, match="valid stages"):
        train("nope")


# ------------------------------------------------------------------------------------------- stages
@pytest.fixture(scope="module")
def csrnet_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("csrnet")
    summary = train("csrnet", None, tiny(out) + ["train.iters=2", "data.crop=[32,48]",
                                                          "data.scale=[0.75,1.25]", "model.pretrained_backbone=false"])
    return out, summary


@pytest.mark.slow
def test_stage_csrnet(csrnet_run):
    out, summary = csrnet_run
    assert summary["iteration"] == 2 and not summary["stopped_early"]
    for name in ("config.yaml", "env.json", "git_revision", "last.pth", "best.pth", "final.pth", "metrics.jsonl"):
        assert (out / name).is_file(), name
    assert any((out / "tb").iterdir())
    state = load(out / "final.pth")  # weights_only
    assert state["iteration"] == 2 and state["stage"] == "csrnet" and state["config"]["train"]["iters"] == 2
    assert 0.0 <= summary["metrics"]["miou"] <= 1.0
    groups = {g["name"]: g for g in state["optimizer"]["param_groups"]}
    assert groups["encoder"]["weight_decay"] == pytest.approx(groups["decoder"]["weight_decay"] / 4)
    assert yaml.safe_load((out / "config.yaml").read_text())["stage"] == "csrnet"
    load_checkpoint(CSRNet(19), out / "final.pth")


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["distill", "both"])
def test_stage_flownet(tmp_path, mode):
    summary = train("flownet", None, tiny(tmp_path) + ["train.iters=1", f"flow.mode={mode}"])
    assert summary["iteration"] == 1
    assert summary["metrics"]["epe"] >= 0 and summary["metrics"]["score"] == -summary["metrics"]["epe"]
    state = load(tmp_path / "final.pth")
    assert "predict_flow2.weight" in state["model"]


@pytest.mark.slow
def test_stage_evss(tmp_path, csrnet_run):
    csr_out, _ = csrnet_run
    summary = train("evss", None, tiny(tmp_path, clip_len=4) + [
        "train.iters=1", "data.offsets=[-1,1]", "data.crop=null", "eval.distances=[1,2]",
        f"model.csrnet={csr_out / 'final.pth'}"])
    assert summary["iteration"] == 1
    metrics = summary["metrics"]
    for key in ("miou_keyframe", "miou_d1", "miou_d2", "miou_warp_d2", "miou_mean"):
        assert key in metrics
    state = load(tmp_path / "final.pth")
    csr = load(csr_out / "final.pth")["model"]
    # CSRNet stayed frozen (parameters and BN statistics)
    for k, v in csr.items():
        assert torch.equal(state["model"]["csrnet." + k], v), k
    names = [g["name"] for g in state["optimizer"]["param_groups"]]
    assert names == ["flownet", "conet"]
    with pytest.raises(ConfigError, match="model.csrnet"):
        train("evss", None, tiny(tmp_path / "x") + ["train.iters=1"])


@pytest.mark.slow
def test_stage_recurrent(tmp_path):
    """A few truncated-BPTT iterations of each cell with the thesis's losses on tiny synthetic windows,
    starting from a stage-1 CSRNet checkpoint."""
    csrnet = tmp_path / "csrnet.pth"
    torch.manual_seed(0)
    torch.save({"model": CSRNet(19).state_dict()}, csrnet)
    common = ["device=cpu", "data.synthetic.height=32", "data.synthetic.width=64", "data.synthetic.train_clips=1",
              "data.synthetic.val_clips=1", "data.synthetic.clip_len=4", "data.val_limit=1", "data.crop=[32,64]",
              "train.batch_size=2", "train.iters=2", "train.workers=0", "train.progress=false",
              "train.log_every=1", "train.tb_images=0", "recurrent.window=2", "recurrent.eval_window=3",
              "recurrent.change_weight=0.5", "recurrent.smoothing_weight=0.01", "recurrent.warping_weight=0.5",
              "recurrent.smoothing_kernel=[5,9]", "recurrent.smoothing_sigma=[2.0,4.0]", "model.hidden_channels=8"]
    for cell in ("convlstm", "convgru"):
        out = tmp_path / cell
        summary = train("recurrent", None, common + [f"out_dir={out}", f"model.cell={cell}", f"model.csrnet={csrnet}"])
        assert summary["iteration"] == 2 and 0.0 <= summary["metrics"]["miou"] <= 1.0
        net = RecurrentCSRNet(19, cell=cell, hidden_channels=8)
        assert load_checkpoint(net, out / "final.pth") == ""
    with pytest.raises(ConfigError, match="model.csrnet"):
        train("recurrent", None, common + [f"out_dir={tmp_path / 'x'}"])
    with pytest.raises(ConfigError, match="clip_len 4 is shorter than the window 5"):
        train("recurrent", None, common + [f"out_dir={tmp_path / 'y'}", f"model.csrnet={csrnet}", "recurrent.window=5"])


# ------------------------------------------------------------------------------------------- resume
@pytest.mark.slow
@pytest.mark.parametrize("cut", [2, 3])  # mid-epoch, and at the epoch boundary (3 iterations per epoch)
def test_resume_matches_uninterrupted(tmp_path, cut):
    common = ["deterministic=true", "train.iters=5", "data.synthetic.val_clips=0", "data.crop=[32,48]",
              "data.scale=[0.75,1.25]", "model.pretrained_backbone=false", "train.ckpt_every=0"]
    full = train("csrnet", None, tiny(tmp_path / "full", clip_len=7, batch=2) + common)
    assert full["iteration"] == 5 and full["epoch"] == 2  # 6 samples / batch 2 = 3 iterations per epoch
    interrupted = train("csrnet", None, tiny(tmp_path / "cut", clip_len=7, batch=2) + common
                                 + [f"train.stop_after={cut}"])
    assert interrupted["stopped_early"] and interrupted["iteration"] == cut
    assert (tmp_path / "cut" / "last.pth").is_file() and not (tmp_path / "cut" / "final.pth").exists()
    resumed = train("csrnet", None, tiny(tmp_path / "cut", clip_len=7, batch=2) + common)
    assert resumed["iteration"] == 5
    a, b = load(tmp_path / "full" / "final.pth"), load(tmp_path / "cut" / "final.pth")
    assert_same_weights(a["model"], b["model"])
    assert a["scheduler"] == b["scheduler"] and a["optimizer"]["state"].keys() == b["optimizer"]["state"].keys()
    assert "resumed from" in (tmp_path / "cut" / "log.txt").read_text()


# ------------------------------------------------------------------------------------------- NaN stop
@pytest.mark.slow
def test_nonfinite_loss_stops(tmp_path):
    cfg = resolve_config("csrnet", None, tiny(tmp_path, clip_len=7) + [
        "train.iters=5", "train.ckpt_every_iters=1", "model.pretrained_backbone=false", "data.synthetic.val_clips=0",
        "data.crop=null", "data.scale=null"])

    class Poisoned(CSRNetStage):
        calls = 0

        def train_step(self, model, batch):
            out = super().train_step(model, batch)
            Poisoned.calls += 1
            if Poisoned.calls == 3:
                out["loss"] = out["loss"] * float("nan")
            return out

    trainer = Trainer(cfg, Poisoned(cfg))
    with pytest.raises(NonFiniteLossError) as info:
        try:
            trainer.fit()
        finally:
            distributed.cleanup()
    message = str(info.value)
    assert "iteration 3" in message
    assert "synthetic_train_0000_" in message
    assert str(tmp_path / "last.pth") in message
    assert load(tmp_path / "last.pth")["iteration"] == 2  # the last good state is intact


# ------------------------------------------------------------------------------------------- DDP
@pytest.mark.slow
def test_ddp_two_processes_match_single_process(tmp_path):
    """2 gloo processes × batch 1 == 1 process × batch 2 (BatchNorm frozen: running statistics)."""
    common = ["train.iters=2", "train.freeze_bn=true", "data.flip=0", "data.crop=null", "data.scale=null",
              "data.synthetic.val_clips=0", "model.pretrained_backbone=false", "deterministic=true",
              "optim.lr=1e-3", "optim.schedule_unit=iter"]
    single = train("csrnet", None, tiny(tmp_path / "single", clip_len=5, batch=2) + common)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env.pop("WORLD_SIZE", None), env.pop("RANK", None), env.pop("LOCAL_RANK", None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "tools.train", "--stage", "csrnet"] + tiny(tmp_path / "ddp", clip_len=5, batch=1) + common
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "2 process(es)" in proc.stderr
    a, b = load(tmp_path / "single" / "final.pth"), load(tmp_path / "ddp" / "final.pth")
    assert single["iteration"] == b["iteration"] == 2
    torch.manual_seed(666)  # the trainer's seed: the initial weights
    init = CSRNet(19).state_dict()
    assert max((a["model"][k] - v).abs().max().item() for k, v in init.items() if v.is_floating_point()) > 1e-4
    assert_same_weights(a["model"], b["model"], atol=2e-5, rtol=1e-4)
