"""Resuming never rewrites a run's record: a config that differs from the checkpoint's stops (unless
allowed or accepted with --resume-with-changes, then it is recorded), a finished run is left as it
is, stale temporaries are cleaned, and a failed checkpoint write keeps the previous one."""
from __future__ import annotations

import errno
import io
import json

import pytest
import torch

from engine import atomic, distributed
from engine.atomic import WriteError, atomic_torch_save
from engine.config import ResumeConflictError
from engine.resume import clean_stale_temporaries, config_changes, is_mutable, resume_entry
from engine.stages import train
from model.errors import run_cli
from tools import train as train_tool


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny(out_dir, iters=3):
    return [f"out_dir={out_dir}", "device=cpu", "data.synthetic.height=32", "data.synthetic.width=64",
            "data.synthetic.train_clips=1", "data.synthetic.val_clips=0", "data.synthetic.clip_len=5",
            "data.crop=null", "data.scale=null", "train.batch_size=2", "train.workers=0", "train.progress=false",
            "train.tb_images=0", "model.pretrained_backbone=false", f"train.iters={iters}", "deterministic=true"]


def run(out_dir, *extra, accept=False, iters=3):
    try:
        return train("csrnet", None, tiny(out_dir, iters) + list(extra), accept_changes=accept)
    finally:
        distributed.cleanup()


def load(path):
    return torch.load(path, map_location="cpu", weights_only=True)


# ------------------------------------------------------------------------------------------- units
def test_config_changes_and_the_allow_list():
    saved = {"optim": {"lr": 1e-4}, "train": {"iters": 10, "log_every": 5}, "eval": {"distances": [1, 5]}}
    current = {"optim": {"lr": 5e-3}, "train": {"iters": 20, "log_every": 1}, "eval": {"distances": [1]},
               "data": {"new": 1}}
    assert config_changes(saved, current) == {
        "data.new": ("<absent>", 1), "eval.distances": ([1, 5], [1]), "optim.lr": (1e-4, 5e-3),
        "train.iters": (10, 20), "train.log_every": (5, 1)}
    assert [k for k in config_changes(saved, current) if not is_mutable(k)] == ["data.new", "optim.lr"]
    state = {"config": saved, "iteration": 7}
    with pytest.raises(ResumeConflictError) as info:
        resume_entry("run/last.pth", state, current, accept_changes=False)
    message = str(info.value)
    assert message.startswith("run/last.pth was trained with other settings (data.new '<absent>' -> 1, "
                              "optim.lr 0.0001 -> 0.005)")
    assert "new out_dir" in message and "--resume-with-changes" in message and "train.iters" not in message
    entry = resume_entry("run/last.pth", state, current, accept_changes=True)
    assert entry["accepted"] == "--resume-with-changes" and entry["iteration"] == 7
    assert entry["changes"]["optim.lr"] == [1e-4, 5e-3]
    allowed = resume_entry("run/last.pth", state, dict(saved, train={"iters": 30, "log_every": 5}), False)
    assert allowed["accepted"] == "allowed" and allowed["changes"] == {"train.iters": [10, 30]}


def test_clean_stale_temporaries(tmp_path):
    (tmp_path / ".last.pth.abc123.tmp").write_bytes(b"")
    (tmp_path / ".config.yaml.x.tmp").write_text("half")
    (tmp_path / "last.pth").write_bytes(b"keep")
    (tmp_path / "notes.tmp").write_text("not ours")
    removed = clean_stale_temporaries(tmp_path)
    assert [p.name for p in removed] == [".config.yaml.x.tmp", ".last.pth.abc123.tmp"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pth", "notes.tmp"]


class FullDisk(io.RawIOBase):
    """A file whose writes fail with ENOSPC after ``room`` bytes, like a full file system."""

    def __init__(self, handle, room):
        self.handle, self.room = handle, room

    def writable(self):
        return True

    def write(self, data):
        if len(data) > self.room:
            raise OSError(errno.ENOSPC, "No space left on device")
        self.room -= len(data)
        return self.handle.write(data)

    def fileno(self):
        return self.handle.fileno()

    def close(self):
        self.handle.close()
        super().close()


def test_full_disk_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "last.pth"
    atomic_torch_save({"w": torch.arange(4.0)}, path)
    before = path.read_bytes()
    real_fdopen = atomic.os.fdopen
    monkeypatch.setattr(atomic.os, "fdopen", lambda fd, mode: FullDisk(real_fdopen(fd, mode), room=100))
    with pytest.raises(WriteError) as info:
        atomic_torch_save({"w": torch.zeros(10_000)}, path)
    assert str(info.value) == f"{path}: could not be written (No space left on device); the previous version is unchanged"
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["last.pth"]
    assert info.value.exit_code == 7


# ------------------------------------------------------------------------------------------- runs
@pytest.mark.slow
def test_rerun_with_other_settings_keeps_the_record(tmp_path):
    out = tmp_path / "run"
    first = run(out)
    assert first["iteration"] == 3
    record = {name: (out / name).read_bytes() for name in ("config.yaml", "final.pth", "last.pth")}

    # the case: a finished run rerun with another batch size and learning rate
    with pytest.raises(ResumeConflictError, match=r"optim.lr 0.0004 -> 0.005, train.batch_size 2 -> 4\)"):
        run(out, "train.batch_size=4", "optim.lr=5e-3")
    # the same settings: nothing to train, nothing rewritten
    again = run(out)
    assert again["already_complete"] and again["iteration"] == 3
    assert {name: (out / name).read_bytes() for name in record} == record
    assert "has completed all 3 iterations" in (out / "log.txt").read_text()

    # extending the run is allowed, and recorded
    longer = run(out, iters=5)
    assert longer["iteration"] == 5 and not longer.get("already_complete")
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert history[-1]["changes"] == {"train.iters": [3, 5]} and history[-1]["accepted"] == "allowed"
    assert load(out / "final.pth")["history"] == history


@pytest.mark.slow
def test_resume_with_changes_applies_and_records_them(tmp_path):
    out = tmp_path / "run"
    run(out, "train.stop_after=2", iters=4)
    record = (out / "config.yaml").read_bytes(), (out / "last.pth").read_bytes()
    with pytest.raises(ResumeConflictError, match="optim.lr"):
        run(out, "optim.lr=1e-3", iters=4)
    assert ((out / "config.yaml").read_bytes(), (out / "last.pth").read_bytes()) == record
    (out / ".last.pth.crash.tmp").write_bytes(b"")  # what a kill -9 during a checkpoint write leaves
    summary = run(out, "optim.lr=1e-3", "optim.schedule=constant", accept=True, iters=4)
    assert summary["iteration"] == 4
    state = load(out / "final.pth")
    assert [g["lr"] for g in state["optimizer"]["param_groups"]] == pytest.approx([1e-3 * 0.25, 1e-3])
    entry = state["history"][-1]
    assert entry["accepted"] == "--resume-with-changes" and entry["iteration"] == 2
    assert entry["changes"] == {"optim.lr": [4e-4, 1e-3], "optim.schedule": ["cosine", "constant"],
                                "train.stop_after": [2, None]}
    assert not (out / ".last.pth.crash.tmp").exists()
    assert "removed 1 temporary file(s) left by an interrupted write: .last.pth.crash.tmp" in (out / "log.txt").read_text()


@pytest.mark.slow
def test_conflict_is_one_line_with_exit_status_6(tmp_path, capsys):
    out = tmp_path / "run"
    run(out, iters=2)
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        run_cli(train_tool.main, ["--stage", "csrnet", *tiny(out, 2), "optim.lr=1e-3"])
    assert info.value.code == 6
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "optim.lr 0.0004 -> 0.001" in err
    distributed.cleanup()
