"""Temporal-consistency training losses for per-frame and recurrent segmentation networks.

Two families, both used in training only:

* **ETC** (Liu et al., ECCV 2020, "Efficient Semantic Video Segmentation with Per-frame
  Inference"): the motion loss :func:`motion_loss` (the prediction at t against the prediction at
  t+1 warped back by a frozen optical flow, weighted by an occlusion mask from the photometric
  warping error), and temporal knowledge distillation from a frozen teacher: the pixel-wise KL
  :func:`pixelwise_kd` and the pair-wise inter-frame consistency :func:`pairwise_consistency`.
* The consistency losses of the ENet+ConvLSTM thesis (Verherstraeten,
  ``semantic-video-segmentation``): :func:`change_loss`, :func:`smoothing_loss` and
  :func:`flow_warping_loss`.

Flows follow the project's convention (as :func:`model.warp.warp`): ``flow_a→b`` is B×2×H×W in
pixels, channel 0 = dx, and pixel x of frame a is found at x + flow(x) in frame b, so
``warp(map_b, flow_a→b)`` brings a map of frame b onto frame a. Flows are always treated as
constants: every loss detaches them, so no gradient ever reaches a flow estimator.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .blocks import IMAGENET_MEAN, IMAGENET_STD
from .label_warp import warp_labels
from .warp import warp

#: Gaussian-blur defaults of the thesis's smoothing loss: kernel (height, width), sigma (y, x).
SMOOTHING_KERNEL = (25, 51)
SMOOTHING_SIGMA = (10.0, 20.0)


def _normalized(frames: Tensor) -> Tensor:
    """RGB in [0, 1] → ImageNet-normalised, the image space ETC computes its occlusion mask in."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=frames.dtype, device=frames.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=frames.dtype, device=frames.device).view(1, 3, 1, 1)
    return (frames - mean) / std


@torch.no_grad()
def occlusion_mask(frame_t: Tensor, frame_next: Tensor, flow_fwd: Tensor) -> Tensor:
    """ETC's soft non-occlusion mask, B×1×H×W in (0, 1]: ``exp(−|Σ_c (I_t − Ŵ(I_t+1))_c|)``.

    ``Ŵ(I_t+1)`` is frame t+1 warped onto frame t by ``flow_fwd`` = flow_t→t+1 (bilinear). Both
    frames are RGB in [0, 1] and compared after ImageNet normalisation, as ETC computes it on its
    normalised network inputs (the signed channel sum, then the absolute value). Where the warp
    reproduces frame t the mask is 1; occluded or badly matched pixels get weights near 0.
    """
    warped = warp(frame_next.float(), flow_fwd.detach().float())
    diff = (_normalized(frame_t.float()) - _normalized(warped)).sum(1, keepdim=True)
    return torch.exp(-diff.abs())


def motion_loss(logits_t: Tensor, logits_next: Tensor, flow_fwd: Tensor, mask: Tensor) -> Tensor:
    """ETC's motion (temporal) loss: ``mean((m·z_t − m·Ŵ(z_t+1))²)`` over B×C×H×W.

    Args:
        logits_t: B×C×H×W logits on frame t (ETC: upsampled to the image resolution).
        logits_next: B×C×H×W logits on frame t+1.
        flow_fwd: B×2×H×W flow_t→t+1 from a frozen estimator (detached here).
        mask: B×1×H×W weights, :func:`occlusion_mask` (detached here).

    Zero when ``logits_next`` warped back equals ``logits_t`` wherever the mask is non-zero;
    gradients reach both predictions (ETC trains both frames' forward passes), never the flow.
    """
    warped = warp(logits_next, flow_fwd.detach().to(logits_next.dtype))
    m = mask.detach().to(logits_t.dtype)
    return F.mse_loss(logits_t * m, warped * m)


def pixelwise_kd(student_logits: Tensor, teacher_logits: Tensor, temperature: float = 1.0) -> Tensor:
    """Pixel-wise distillation ``KL(softmax(t/T) ‖ softmax(s/T))`` averaged over all B·C·H·W elements.

    ETC uses ``nn.KLDivLoss()`` with its element-wise mean (not the per-sample ``batchmean``); the
    student is resized bilinearly (``align_corners=True``) to the teacher's grid when they differ.
    The teacher is detached.
    """
    if student_logits.shape[-2:] != teacher_logits.shape[-2:]:
        student_logits = F.interpolate(student_logits, size=teacher_logits.shape[-2:], mode="bilinear",
                                       align_corners=True)
    log_p = F.log_softmax(student_logits / temperature, dim=1)
    q = F.softmax(teacher_logits.detach() / temperature, dim=1)
    return F.kl_div(log_p, q, reduction="sum") / log_p.numel()


def inter_frame_affinity(maps_t: Tensor, maps_next: Tensor, eps: float = 1e-8) -> Tensor:
    """Cosine similarity of every position of frame t with every position of frame t+1.

    B×C×H×W pairs → B×N×N, N = H·W, entry (i, j) = cos(maps_t[:, :, i], maps_next[:, :, j]). The
    norms are clamped at ``eps`` (ETC divides by them unguarded).
    """
    a = maps_t.flatten(2)
    b = maps_next.flatten(2)
    dot = torch.bmm(a.transpose(1, 2), b)
    norms = a.norm(dim=1).unsqueeze(2) * b.norm(dim=1).unsqueeze(1)
    return dot / norms.clamp_min(eps)


def pairwise_consistency(student_t: Tensor, student_next: Tensor, teacher_t: Tensor, teacher_next: Tensor,
                         pool: int = 1) -> Tensor:
    """ETC's pair-wise (inter-frame) distillation: MSE between the student's and the teacher's
    :func:`inter_frame_affinity` of the two frames' maps (logits).

    ``pool`` > 1 average-pools every map by ``pool`` first (N² memory: at N = 128·128 the graph
    alone is 1 GiB in float32). The teacher is detached; zero when the student's cross-frame
    similarity structure equals the teacher's.
    """
    maps = [student_t, student_next, teacher_t.detach(), teacher_next.detach()]
    if pool > 1:
        maps = [F.avg_pool2d(m, pool, pool, ceil_mode=True) for m in maps]
    return F.mse_loss(inter_frame_affinity(maps[0], maps[1]), inter_frame_affinity(maps[2], maps[3]))


# ---------------------------------------------------------------------------------------------- thesis
def change_loss(logits_t: Tensor, logits_prev: Tensor) -> Tensor:
    """The thesis's change loss: cross-entropy of the prediction at t against the (detached) class
    map predicted at t−1, i.e. a penalty on any change of the prediction between frames."""
    return F.cross_entropy(logits_t, logits_prev.detach().argmax(1))


def gaussian_kernel1d(size: int, sigma: float, dtype: torch.dtype = torch.float32) -> Tensor:
    """OpenCV's ``getGaussianKernel(size, sigma)`` for sigma > 0: normalised samples of a Gaussian."""
    if size < 1 or size % 2 == 0:
        raise ValueError(f"Gaussian kernel size must be odd and positive, got {size}")
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    k = torch.exp(-x.pow(2) / (2 * sigma * sigma))
    return (k / k.sum()).to(dtype)


def gaussian_blur(maps: Tensor, kernel: tuple[int, int] = SMOOTHING_KERNEL,
                  sigma: tuple[float, float] = SMOOTHING_SIGMA) -> Tensor:
    """Separable Gaussian blur of B×C×H×W maps, ``kernel`` = (height, width), ``sigma`` = (y, x),
    with OpenCV's default border (reflect without repeating the edge), like ``cv2.GaussianBlur``."""
    (kh, kw), (sy, sx) = kernel, sigma
    h, w = maps.shape[-2:]
    if kh // 2 >= h or kw // 2 >= w:
        raise ValueError(f"Gaussian kernel {kernel} is too large for {h}×{w} maps (reflected borders need "
                         f"kernel//2 < size); use a smaller smoothing kernel or larger maps")
    c = maps.shape[1]
    ky = gaussian_kernel1d(kh, sy, maps.dtype).to(maps.device).view(1, 1, kh, 1).expand(c, 1, kh, 1)
    kx = gaussian_kernel1d(kw, sx, maps.dtype).to(maps.device).view(1, 1, 1, kw).expand(c, 1, 1, kw)
    out = F.conv2d(F.pad(maps, (0, 0, kh // 2, kh // 2), mode="reflect"), ky, groups=c)
    return F.conv2d(F.pad(out, (kw // 2, kw // 2, 0, 0), mode="reflect"), kx, groups=c)


def smoothing_loss(logits_t: Tensor, logits_prev: Tensor, kernel: tuple[int, int] = SMOOTHING_KERNEL,
                   sigma: tuple[float, float] = SMOOTHING_SIGMA) -> Tensor:
    """The thesis's smoothing loss: ``1 / mean(softmax(G * softmax(z_t−1)) · softmax(z_t))``.

    ``G *`` is a spatial Gaussian blur (default 25×51 kernel, sigma 10×20 pixels, as the thesis,
    at the resolution of the maps given) of the previous frame's class probabilities, which are
    detached. The loss rewards probability mass at t near where the class was at t−1: it is
    smallest when the prediction does not move, and tolerates small motions.
    """
    prev = F.softmax(gaussian_blur(F.softmax(logits_prev.detach(), dim=1), kernel, sigma), dim=1)
    return 1.0 / (prev * F.softmax(logits_t, dim=1)).mean()


def flow_warping_loss(logits_t: Tensor, logits_prev: Tensor, flow_bwd: Tensor, ignore_index: int = 255) -> Tensor:
    """The thesis's flow-warping loss: cross-entropy of the prediction at t against the class map
    predicted at t−1 warped onto frame t (nearest neighbour) by ``flow_bwd`` = flow_t→t−1.

    Pixels whose flow target falls outside frame t−1 are ignored (the thesis clamps them to the
    border). Zero gradient to the flow and to the previous prediction (both detached).
    """
    target = warp_labels(logits_prev.detach().argmax(1), flow_bwd.detach().float(), fill_value=ignore_index)
    if bool((target == ignore_index).all()):
        return logits_t.sum() * 0.0
    return F.cross_entropy(logits_t, target, ignore_index=ignore_index)

