"""The four EVSS training losses (stage 2), as the original defines them.

All semantic supervision is the keyframe network's own prediction on the labelled frame (the
pseudo-label), not the ground truth; the ground truth only builds the edge label.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

#: Original weighting of (warp, semantic, edge, edge_semantic).
LOSS_WEIGHTS = (0.2, 0.5, 0.1, 0.2)
EDGE_IGNORE = 255


class EVSSLosses(NamedTuple):
    warp: Tensor
    semantic: Tensor
    edge: Tensor
    edge_semantic: Tensor

    def total(self, weights: tuple[float, float, float, float] = LOSS_WEIGHTS) -> Tensor:
        """Weighted sum, in the original's order of additions."""
        return weights[0] * self.warp + weights[1] * self.semantic + weights[2] * self.edge + \
            weights[3] * self.edge_semantic


def edge_class_counts(edge_label: Tensor) -> Tensor:
    """[n0, n1]: non-edge and edge pixels over the whole batch (255 ignored), float32."""
    return torch.stack([(edge_label == 0).sum(dtype=torch.float32), (edge_label == 1).sum(dtype=torch.float32)])


def edge_class_weights(counts: Tensor) -> Tensor:
    """[w_non_edge, w_edge] = [n1, n0] / (n0 + n1): the rarer class weighs more."""
    return counts.flip(0) / counts.sum().clamp_min(1)


def edge_loss(edge_logits: Tensor, edge_label: Tensor) -> Tensor:
    """Class-balanced cross-entropy of B×2×H×W edge logits against the {0, 1, 255} edge label.

    ``Σ w_t·nll / Σ w_t`` like ``F.cross_entropy(weight=...)``, except that a batch with no edge or
    no non-edge pixel gives 0 instead of the original's NaN.
    """
    counts = edge_class_counts(edge_label)
    weights = edge_class_weights(counts).to(edge_logits.dtype)
    nll = F.cross_entropy(edge_logits, edge_label, weight=weights, ignore_index=EDGE_IGNORE, reduction="sum")
    return nll / (weights * counts).sum().clamp_min(torch.finfo(nll.dtype).tiny)


def edge_semantic_loss(update_up: Tensor, edge_logits_up: Tensor, pseudo_label: Tensor) -> Tensor:
    """Cross-entropy of the CoNet logits on predicted edge pixels.

    As the original: A = argmax(edge) (detached); input A·update, target A·pseudo_label, class 0
    ignored, so non-edge pixels *and* edge pixels whose pseudo-label is class 0 do not count.
    An empty selection gives 0 (the original gives NaN).
    """
    on_edge = edge_logits_up.argmax(1).detach()
    target = on_edge * pseudo_label
    nll = F.cross_entropy(on_edge.unsqueeze(1).to(update_up.dtype) * update_up, target, ignore_index=0,
                          reduction="sum")
    return nll / (target != 0).sum().clamp_min(1)
