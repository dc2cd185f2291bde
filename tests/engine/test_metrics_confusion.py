"""ConfusionMatrix (engine/metrics/confusion.py) on hand-computed matrices, and the all-reduce of
the streaming measures over two gloo processes."""
import math
import os

import pytest
import torch

from engine.metrics import ConfusionMatrix, VideoConsistency


def t(rows):
    return torch.tensor(rows, dtype=torch.int64)


LABEL = [[0, 0, 1, 255],
         [0, 1, 1, 1],
         [255, 0, 1, 0]]
PRED = [[0, 1, 1, 2],
        [0, 0, 1, 1],
        [2, 0, 1, 1]]
# labelled pixels (row-major): (l, p) = (0,0) (0,1) (1,1) | (0,0) (1,0) (1,1) (1,1) | (0,0) (1,1) (0,1)
# class 2 never occurs in the labels and is predicted only on ignored pixels -> empty union.
EXPECTED = [[3, 2, 0],
            [1, 4, 0],
            [0, 0, 0]]


def test_confusion_matrix_hand_computed():
    cm = ConfusionMatrix(3, ignore_index=255)
    cm.update(t(PRED), t(LABEL))
    assert cm.matrix.dtype == torch.int64
    assert cm.matrix.tolist() == EXPECTED
    iou = cm.iou()
    assert iou[0].item() == pytest.approx(3 / 6)          # 3 / (5 + 4 - 3)
    assert iou[1].item() == pytest.approx(4 / 7)          # 4 / (5 + 6 - 4)
    assert math.isnan(iou[2].item())
    assert cm.miou() == pytest.approx((3 / 6 + 4 / 7) / 2)  # = 15/28, class 2 excluded
    assert cm.pixel_accuracy() == pytest.approx(7 / 10)
    s = cm.summary()
    assert s["iou"][2] is None and s["num_pixels"] == 10


def test_confusion_matrix_accumulates_int64_and_batches():
    cm = ConfusionMatrix(3, ignore_index=255)
    batch_p = torch.stack([t(PRED), t(PRED)]).to(torch.uint8)
    batch_l = torch.stack([t(LABEL), t(LABEL)]).to(torch.uint8)
    cm.update(batch_p, batch_l)
    cm.update(t(PRED).to(torch.int32), t(LABEL).to(torch.int32))
    assert cm.matrix.dtype == torch.int64
    assert cm.matrix.tolist() == (torch.tensor(EXPECTED) * 3).tolist()
    assert cm.miou() == pytest.approx(15 / 28)


def test_confusion_matrix_errors():
    cm = ConfusionMatrix(3, ignore_index=255)
    with pytest.raises(ValueError) as e:
        cm.update(torch.zeros(2, 3, 4, dtype=torch.long), torch.zeros(2, 4, 3, dtype=torch.long))
    assert "(2, 3, 4)" in str(e.value) and "(2, 4, 3)" in str(e.value)
    with pytest.raises(ValueError, match="label values"):
        cm.update(t([[0, 1]]), t([[0, 3]]))
    with pytest.raises(ValueError, match="pred values"):
        cm.update(t([[0, 7]]), t([[0, 1]]))
    with pytest.raises(TypeError, match="integer"):
        cm.update(torch.zeros(2, 2), t([[0, 1], [1, 0]]))
    assert cm.total == 0 and math.isnan(cm.miou())


def test_confusion_matrix_state_dict_and_merge():
    a = ConfusionMatrix(3, ignore_index=255).update(t(PRED), t(LABEL))
    b = ConfusionMatrix.from_state_dict(a.state_dict())
    assert b.matrix.tolist() == EXPECTED
    b.merge(a).merge(a.state_dict())
    b += a.matrix
    assert b.matrix.tolist() == (torch.tensor(EXPECTED) * 4).tolist()
    with pytest.raises(ValueError):
        b.merge(ConfusionMatrix(4, ignore_index=255))


def _dist_worker(rank, world, init_file, out_dir):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        g = torch.Generator().manual_seed(100 + rank)
        pred = torch.randint(0, 5, (3, 16, 16), generator=g)
        label = torch.randint(0, 6, (3, 16, 16), generator=g)
        label[label == 5] = 255
        cm = ConfusionMatrix(5, ignore_index=255).update(pred, label)
        vc = VideoConsistency(n=2).update(pred, label.clamp_max(4))
        cm.all_reduce()
        vc.all_reduce()
        torch.save({"cm": cm.matrix, "vc": vc.state_dict()}, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_all_reduce_two_process_gloo(tmp_path):
    import torch.multiprocessing as mp

    world = 2
    mp.spawn(_dist_worker, args=(world, str(tmp_path / "init"), str(tmp_path)), nprocs=world, join=True)
    ref = ConfusionMatrix(5, ignore_index=255)
    ref_vc = VideoConsistency(n=2)
    for rank in range(world):
        g = torch.Generator().manual_seed(100 + rank)
        pred = torch.randint(0, 5, (3, 16, 16), generator=g)
        label = torch.randint(0, 6, (3, 16, 16), generator=g)
        label[label == 5] = 255
        ref.update(pred, label)
        ref_vc.merge(VideoConsistency(n=2).update(pred, label.clamp_max(4)))
    for rank in range(world):
        got = torch.load(tmp_path / f"rank{rank}.pt")
        assert got["cm"].dtype == torch.int64
        assert torch.equal(got["cm"], ref.matrix)
        assert torch.allclose(got["vc"]["sums"], ref_vc.state_dict()["sums"])
        assert torch.equal(got["vc"]["windows"], ref_vc.state_dict()["windows"])
    assert ConfusionMatrix(5).all_reduce().total == 0  # no process group: no-op
