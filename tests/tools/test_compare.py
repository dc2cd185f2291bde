"""tools/compare.py on a tiny synthetic configuration (random or few-iteration weights): the registry
extended by hand, every default method with training, missing checkpoints, DAVSS's two training stages."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from dataset import MissingFileError
from dataset.synthetic import SyntheticVideoDataset
from engine.compare import DEFAULT_METHODS, METHODS, Method, comparison_clips
from engine.config import ConfigError
from model import CSRNet, FlowNetS, build_evss
from tools import compare

TINY = ["--clips", "1", "--clip-len", "3", "--height", "32", "--width", "64", "--time-frames", "2",
        "--repeats", "1", "--warmup", "0", "--threads", "1"]


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class Constant:
    """Predicts one class everywhere: perfectly consistent over time."""

    def __init__(self, cls: int):
        self.cls = cls

    def reset(self) -> None:
        pass

    def step(self, frame: torch.Tensor) -> torch.Tensor:
        return torch.full((1, *frame.shape[-2:]), self.cls, dtype=torch.int64)


@pytest.mark.slow
def test_registry_extension_and_constant_method(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(METHODS, "constant_road",
                        Method(lambda ctx: Constant(0), (), "class 0 everywhere"))
    summary = compare.main(["--methods", "constant_road", "--out", str(tmp_path)] + TINY)
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert last == summary and set(last) == {"constant_road"}
    r = last["constant_road"]
    assert r["tc"] == 1.0 and r["tiou"] == 1.0             # nothing ever changes
    labels = SyntheticVideoDataset("val", "eval", num_clips=1, clip_len=3, height=32, width=64,
                                   window=3)[0]["labels"].numpy()
    valid = labels != 255
    iou_road = (labels[valid] == 0).sum() / valid.sum()     # IoU of class 0; every other present class 0
    assert r["miou"] == pytest.approx(iou_road / len(np.unique(labels[valid])), rel=1e-9)
    assert r["ms_per_frame"] > 0
    for name in ("results.json", "results.md", "config.json", "env.json"):
        assert (tmp_path / name).is_file(), name


@pytest.mark.slow
def test_all_methods_with_given_checkpoints_and_tiny_training(tmp_path, capsys):
    torch.manual_seed(0)
    paths = {"csrnet": tmp_path / "csrnet.pth", "evss": tmp_path / "evss.pth"}
    torch.save({"model": CSRNet(19).state_dict()}, paths["csrnet"])
    torch.save(build_evss(19).state_dict(), paths["evss"])
    tiny_train = ["data.synthetic.height=32", "data.synthetic.width=64", "data.synthetic.train_clips=1",
                  "data.synthetic.clip_len=4", "data.crop=[32,48]", "train.batch_size=2", "train.progress=false",
                  "model.hidden_channels=8", "recurrent.window=2"]
    overrides = []
    for name in ("per_frame", "etc", "convlstm"):
        for item in tiny_train:
            if name != "convlstm" and item.startswith(("model.hidden", "recurrent.")):
                continue
            overrides += ["--train-override", f"{name}:{item}"]
    compare.main(["--out", str(tmp_path / "run"), "--iters", "1", "--checkpoint", f"csrnet={paths['csrnet']}",
                  "--checkpoint", f"evss={paths['evss']}"] + overrides + TINY)
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert list(last) == list(DEFAULT_METHODS)
    for name, r in last.items():
        assert set(r) == {"miou", "tc", "tiou", "ms_per_frame"}, name
        assert 0.0 <= r["miou"] <= 1.0 and 0.0 <= r["tc"] <= 1.0 and 0.0 <= r["tiou"] <= 1.0, name
    for name in ("per_frame", "etc", "convlstm"):
        assert (tmp_path / "run" / name / "final.pth").is_file()
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["methods"]["convlstm"]["checkpoints"]["convlstm"].endswith("convlstm/final.pth")


def test_missing_checkpoint_on_real_data_says_what_to_pass(tmp_path):
    with pytest.raises(FileNotFoundError, match="--checkpoint per_frame=PATH"):
        compare.main(["--dataset", "cityscapes", "--data-root", str(tmp_path), "--methods", "per_frame",
                      "--out", str(tmp_path / "run")])


@pytest.mark.slow
def test_davss_trains_both_stages_on_the_synthetic_set(tmp_path, capsys):
    torch.manual_seed(0)
    paths = {"csrnet": tmp_path / "csrnet.pth", "flownet": tmp_path / "flownet.pth"}
    torch.save({"model": CSRNet(19).state_dict()}, paths["csrnet"])
    torch.save(FlowNetS().state_dict(), paths["flownet"])
    tiny = ["data.synthetic.height=32", "data.synthetic.width=64", "data.synthetic.train_clips=1",
            "data.synthetic.clip_len=4", "data.max_distance=2", "train.batch_size=2", "train.progress=false",
            "train.iters=1"]
    overrides = []
    for stage in ("davss_dmnet", "davss"):
        for item in tiny:
            overrides += ["--train-override", f"{stage}:{item}"]
    summary = compare.main(["--methods", "davss_k5,davss_k10", "--out", str(tmp_path / "run"),
                            "--checkpoint", f"csrnet={paths['csrnet']}", "--checkpoint", f"flownet={paths['flownet']}"]
                           + overrides + TINY)
    assert set(summary) == {"davss_k5", "davss_k10"}
    for stage in ("davss_dmnet", "davss"):
        assert (tmp_path / "run" / stage / "final.pth").is_file(), stage
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["methods"]["davss_k5"]["checkpoints"] == {"davss": str(tmp_path / "run" / "davss" / "final.pth")}


def test_counts_and_allow_missing_on_a_cityscapes_tree(tmp_path, capsys):
    from dataset.synthetic import write_cityscapes_layout

    root = tmp_path / "citys"
    write_cityscapes_layout(root, "val", num_clips=2, height=32, width=64, num_frames=20)
    (root / "gtFine/val/synthville/synthville_000000_000019_gtFine_labelTrainIds.png").unlink()
    ckpt = tmp_path / "csrnet.pth"
    torch.save({"model": CSRNet(19).state_dict()}, ckpt)
    args = ["--dataset", "cityscapes", "--data-root", str(root), "--window", "2", "--methods", "per_frame",
            "--checkpoint", f"per_frame={ckpt}", "--out", str(tmp_path / "run"), "--time-frames", "2",
            "--repeats", "1", "--warmup", "0", "--threads", "1"]
    with pytest.raises(MissingFileError, match=r"synthville_000000_000019_gtFine_labelTrainIds\.png: label does not "
                                               r"exist, but synthville_000000_000019_gtFine_labelIds\.png does"):
        compare.main(args)
    with pytest.warns(UserWarning, match="synthville_000000_000019"):
        compare.main(args + ["--allow-missing"])
    out = capsys.readouterr().out.splitlines()
    assert "[compare] 1 of 2 labelled frames evaluated (1 skipped: label missing)" in out
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert (results["samples_expected"], results["samples_used"]) == (2, 1)


def test_allow_missing_is_for_data_on_disk():
    with pytest.raises(ConfigError, match="--allow-missing applies to data on disk"):
        comparison_clips("synthetic", allow_missing=True)
