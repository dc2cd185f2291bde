"""Nearest-neighbour warping of class maps (model/label_warp.py), hand-computed."""

from model.label_warp import flow_target_in_frame, warp_labels
from tests.label_maps import const_flow, t


def test_warp_labels_rounding_and_out_of_frame():
    lab = t([[10, 11, 12, 13]])
    f = const_flow(1, 1, 4, 1.5)[0]                   # 1.5 rounds half up to 2
    assert warp_labels(lab, f).tolist() == [[12, 13, 13, 13]]
    assert warp_labels(lab, f, fill_value=-1).tolist() == [[12, 13, -1, -1]]
    f = const_flow(1, 1, 4, -0.6)[0]                  # x - 0.6 rounds to x - 1
    assert warp_labels(lab, f, fill_value=-1).tolist() == [[-1, 10, 11, 12]]
    f = const_flow(1, 1, 4, 1.49)[0]
    assert warp_labels(lab, f).tolist() == [[11, 12, 13, 13]]
    f[0, 0, 1] = float("nan")
    assert flow_target_in_frame(f).tolist() == [[[True, False, True, False]]]
