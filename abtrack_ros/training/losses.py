"""Training losses of ABTrack (eq. 2, 6 and 8 of the paper).

Boxes are ``[cx, cy, w, h]`` normalised to the search crop, as the model outputs them. The
classification target is a Gaussian heatmap on the score map (CenterNet style); the regression
losses compare the box decoded at the score argmax with the ground truth. The block sparsity
target uses the sign of method-notes.md: a harder sample (larger GIoU loss) gets a LOWER target
bypass rate.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from abtrack_ros.model import cell_boxes

# Weighted focal loss of CornerNet / CenterNet.
FOCAL_ALPHA = 2.0
FOCAL_BETA = 4.0
# Smallest IoU a box with corners displaced by the Gaussian radius still reaches (CornerNet).
GAUSSIAN_MIN_OVERLAP = 0.7
# CenterNet's convention: the Gaussian's diameter covers 2 r + 1 cells, sigma = diameter / 6.
GAUSSIAN_DIAMETER_PER_SIGMA = 6.0
# Keeps log() finite for saturated score maps.
PROB_EPS = 1e-6
# Keeps IoU ratios finite for degenerate (zero-area) boxes.
BOX_EPS = 1e-7


def _smallest_root(a: float, b: float, c: float) -> float:
    """Smallest non-negative root of a r^2 + b r + c = 0 (the discriminant is >= 0 here)."""
    disc = max(b * b - 4.0 * a * c, 0.0)
    roots = ((-b - math.sqrt(disc)) / (2.0 * a), (-b + math.sqrt(disc)) / (2.0 * a))
    non_negative = [r for r in roots if r >= 0.0]
    return min(non_negative) if non_negative else 0.0


def gaussian_radius(width: float, height: float, min_overlap: float = GAUSSIAN_MIN_OVERLAP) -> float:
    """CornerNet radius: largest corner displacement r keeping IoU >= ``min_overlap``.

    The three cases of CornerNet, each solved exactly for r (the smallest root):
    both corners shifted the same way, the box shrunk inward, the box grown outward.
    Width and height are in heatmap cells.
    """
    if width <= 0 or height <= 0:
        return 0.0
    m, s, area = min_overlap, width + height, width * height
    shifted = _smallest_root(1.0, -s, area * (1.0 - m) / (1.0 + m))
    shrunk = _smallest_root(4.0, -2.0 * s, area * (1.0 - m))
    # Grown box: 4 m r^2 + 2 m s r + (m - 1) area <= 0; its positive root bounds r.
    grown_disc = (2.0 * m * s) ** 2 - 16.0 * m * (m - 1.0) * area
    grown = (-2.0 * m * s + math.sqrt(grown_disc)) / (8.0 * m)
    return min(shifted, shrunk, grown)


def gaussian_heatmap(boxes: Tensor, map_size: int, min_overlap: float = GAUSSIAN_MIN_OVERLAP) -> Tensor:
    """Target score maps ``B,1,S,S``: a Gaussian peaking at 1 on the cell holding each box centre.

    ``boxes`` are ``B,4`` ``[cx, cy, w, h]`` normalised to the crop. The peak cell is
    ``floor(c * S)`` (clamped into the map), the cell the offset map refines.
    """
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"boxes must be B,4 [cx,cy,w,h], got shape {tuple(boxes.shape)}")
    boxes = boxes.detach().float().cpu()
    grid = torch.arange(map_size, dtype=torch.float32)
    maps = []
    for cx, cy, w, h in boxes.tolist():
        radius = gaussian_radius(w * map_size, h * map_size, min_overlap)
        sigma = (2.0 * radius + 1.0) / GAUSSIAN_DIAMETER_PER_SIGMA
        col = min(max(int(math.floor(cx * map_size)), 0), map_size - 1)
        row = min(max(int(math.floor(cy * map_size)), 0), map_size - 1)
        gy = torch.exp(-((grid - row) ** 2) / (2.0 * sigma**2))
        gx = torch.exp(-((grid - col) ** 2) / (2.0 * sigma**2))
        maps.append(gy[:, None] * gx[None, :])
    return torch.stack(maps)[:, None]


def focal_loss(pred: Tensor, target: Tensor, alpha: float = FOCAL_ALPHA, beta: float = FOCAL_BETA,
               normaliser: float | None = None) -> Tensor:
    """Weighted focal loss (CornerNet): positives where target == 1, negatives down-weighted
    near them by (1 - target)^beta; summed and divided by the number of positives (or by
    ``normaliser``: the number of pairs when some maps have no positive at all)."""
    if pred.shape != target.shape:
        raise ValueError(f"score map {tuple(pred.shape)} and target {tuple(target.shape)} differ")
    target = target.to(pred.dtype)
    pred = pred.clamp(PROB_EPS, 1.0 - PROB_EPS)
    positive = target.eq(1.0).to(pred.dtype)
    negative = 1.0 - positive
    pos_term = torch.log(pred) * (1.0 - pred) ** alpha * positive
    neg_term = torch.log(1.0 - pred) * pred**alpha * (1.0 - target) ** beta * negative
    num_pos = positive.sum().clamp(min=1.0) if normaliser is None else normaliser
    return -(pos_term.sum() + neg_term.sum()) / num_pos


def cxcywh_to_xyxy(boxes: Tensor) -> Tensor:
    cx, cy, w, h = boxes.unbind(-1)
    return torch.stack((cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2), dim=-1)


def giou_and_iou(pred: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    """Per-sample generalised IoU and IoU of ``B,4`` ``[cx,cy,w,h]`` boxes."""
    p, t = cxcywh_to_xyxy(pred), cxcywh_to_xyxy(target)
    area_p = (p[:, 2] - p[:, 0]).clamp(min=0) * (p[:, 3] - p[:, 1]).clamp(min=0)
    area_t = (t[:, 2] - t[:, 0]).clamp(min=0) * (t[:, 3] - t[:, 1]).clamp(min=0)
    inter_wh = (torch.minimum(p[:, 2:], t[:, 2:]) - torch.maximum(p[:, :2], t[:, :2])).clamp(min=0)
    inter = inter_wh[:, 0] * inter_wh[:, 1]
    union = area_p + area_t - inter
    iou = inter / (union + BOX_EPS)
    hull_wh = (torch.maximum(p[:, 2:], t[:, 2:]) - torch.minimum(p[:, :2], t[:, :2])).clamp(min=0)
    hull = hull_wh[:, 0] * hull_wh[:, 1]
    giou = iou - (hull - union) / (hull + BOX_EPS)
    return giou, iou


def l1_box_loss(pred: Tensor, target: Tensor) -> Tensor:
    """Mean absolute error over the batch and the four box coordinates."""
    return (pred - target).abs().mean()


def distillation_loss(score_map: Tensor, boxes: Tensor, teacher_score_map: Tensor,
                      teacher_boxes: Tensor) -> Tensor:
    """Pulls the outputs toward a teacher's (the same network with every block run): the
    Bernoulli KL divergence from the teacher's score map, averaged over the cells, plus the L1
    distance of the decoded boxes; 0 when they match. The teacher's outputs carry no gradient."""
    target = teacher_score_map.detach().float().clamp(PROB_EPS, 1.0 - PROB_EPS)
    pred = score_map.float().clamp(PROB_EPS, 1.0 - PROB_EPS)
    kl = target * torch.log(target / pred) + (1.0 - target) * torch.log((1.0 - target) / (1.0 - pred))
    return kl.mean() + l1_box_loss(boxes.float(), teacher_boxes.detach().float())


def quality_loss(quality_map: Tensor, score_map: Tensor, offset_map: Tensor, size_map: Tensor,
                 target_boxes: Tensor, present: Tensor | None = None) -> Tensor:
    """Teaches the quality map the IoU of the box decoded at each cell with the target (0 on
    negative pairs, where ``present`` is 0): the binary KL divergence from that IoU, 0 when the
    map predicts it exactly. Cells are weighted by their (detached) score plus a uniform share,
    so the loss follows the cells the tracker may choose, a look-alike's peak included, and still
    sees every cell; each pair's weights sum to 1, and the pairs are averaged."""
    batch, _, height, width = score_map.shape
    boxes = cell_boxes(offset_map.detach().float(), size_map.detach().float())
    targets = target_boxes.detach().float()[:, None].expand_as(boxes)
    _, iou = giou_and_iou(boxes.reshape(-1, 4), targets.reshape(-1, 4))
    iou = iou.view(batch, -1).clamp(0.0, 1.0)
    if present is not None:
        iou = iou * present.reshape(-1, 1).to(iou.dtype)
    weight = score_map.detach().float().flatten(1) + 1.0 / (height * width)
    weight = weight / weight.sum(dim=1, keepdim=True)
    pred = quality_map.float().flatten(1).clamp(PROB_EPS, 1.0 - PROB_EPS)
    kl = (torch.xlogy(iou, iou) - iou * torch.log(pred)
          + torch.xlogy(1.0 - iou, 1.0 - iou) - (1.0 - iou) * torch.log(1.0 - pred))
    return (kl * weight).sum(dim=1).mean()


SPARSITY_SPREADS = ("loss", "standardised")
# Batch standard deviation below which a standardised spread treats the batch as uniform.
SPREAD_STD_FLOOR = 1e-6


def sparsity_target(
    giou_loss_per_sample: Tensor, tau0: float, slope: float, adaptive: bool = True, spread: str = "loss"
) -> Tensor:
    """Target bypass rate per sample: clip(tau0 - slope * d, 0, 1).

    ``spread="loss"`` (the paper): ``d = L_iou - mean L_iou``. ``"standardised"``: ``d`` is that
    difference over the batch's standard deviation of ``L_iou``, so the targets spread by
    ``slope`` per standard deviation whatever the loss's scale (with the paper's slope and the
    loss spread of a trained tracker, about +-0.02, the targets barely differ). L_iou is detached
    (tau is a target, not a gradient path); mean and deviation are over the batch. With
    ``adaptive=False`` every sample gets tau0 (the Table 5 ablation).
    """
    if spread not in SPARSITY_SPREADS:
        raise ValueError(f"unknown sparsity spread {spread!r} (choose one of: {', '.join(SPARSITY_SPREADS)})")
    loss = giou_loss_per_sample.detach()
    if not adaptive:
        return torch.full_like(loss, tau0)
    deviation = loss - loss.mean()
    if spread == "standardised":  # no host sync: a batch of one has std 0 and gets tau0 like any uniform batch
        std = loss.std(unbiased=False)
        deviation = torch.where(std > SPREAD_STD_FLOOR, deviation / std.clamp_min(SPREAD_STD_FLOOR),
                                torch.zeros_like(deviation))
    return (tau0 - slope * deviation).clamp(0.0, 1.0)


def sparsity_loss(bypass_probs: Tensor, n_enf: int, tau: Tensor) -> Tensor:
    """L_spar = |mean over optional blocks i > n_enf of p_i - tau|, averaged over the batch."""
    if bypass_probs.ndim != 2 or not 0 <= n_enf < bypass_probs.shape[1]:
        raise ValueError(
            f"bypass_probs must be B,N with N > n_enf={n_enf}, got {tuple(bypass_probs.shape)}"
        )
    mean_prob = bypass_probs[:, n_enf:].mean(dim=1)
    return (mean_prob - tau.to(mean_prob.dtype)).abs().mean()


@dataclass
class LossWeights:
    """The weights of eq. 8 plus the sparsity settings of eq. 2 and alpha of eq. 6."""

    focal: float = 1.0
    giou: float = 2.0
    l1: float = 5.0
    sparsity: float = 5.0
    tau0: float = 0.4
    sparsity_slope: float = 0.1
    adaptive_tau: bool = True
    sparsity_spread: str = "loss"
    vtp_l1: float = 1e-4
    distill: float = 0.0
    quality: float = 1.0


@dataclass
class LossTerms:
    """The total loss (for backward) and its detached terms (for logging)."""

    total: Tensor
    terms: dict[str, float]
    iou: Tensor  # per pair with a target in the search crop (all pairs without ``present``), detached


class TrackingCriterion:
    """Eq. 8 (+ eq. 6 in the VTP stage): focal + giou + L1 (+ sparsity) (+ alpha * mask L1)
    (+ the distillation term, an addition to the paper, in the BDM stage)."""

    def __init__(self, weights: LossWeights, map_size: int) -> None:
        self.weights = weights
        self.map_size = map_size

    def __call__(
        self,
        score_map: Tensor,
        pred_boxes: Tensor,
        target_boxes: Tensor,
        bypass_probs: Tensor | None = None,
        n_enf: int = 0,
        mask_l1: Tensor | None = None,
        teacher: tuple[Tensor, Tensor] | None = None,
        present: Tensor | None = None,
        quality: tuple[Tensor, Tensor, Tensor] | None = None,
    ) -> LossTerms:
        """``mask_l1`` is sum_k |D1^k|_1 + |D2^k|_1 (the model's ``l1_masks()``) in the VTP stage;
        ``teacher`` is the (score map, boxes) of the distillation teacher in the BDM stage;
        ``present`` (shape B, values 1.0 / 0.0) marks negative pairs (target outside the search
        crop): their heatmap is all zeros, the focal loss is divided by the number of pairs
        instead of positives (one per pair with a target), the box terms and the returned IoU
        leave them out, and their sparsity target is that of a pair with the present pairs' mean
        loss. The distillation term still compares their boxes with the teacher's. None = every
        target present (the paper's loss, computed as before). ``quality`` is the (quality map,
        offset map, size map) of a model with a quality head (``quality_loss``)."""
        w = self.weights
        heatmap = gaussian_heatmap(target_boxes, self.map_size).to(score_map.device)
        pred_boxes, target_boxes = pred_boxes.float(), target_boxes.float()
        giou, iou = giou_and_iou(pred_boxes, target_boxes)
        giou_per_sample = 1.0 - giou
        focal_normaliser = None
        if present is None:
            giou_term = giou_per_sample.mean()
            l1 = l1_box_loss(pred_boxes, target_boxes)
        else:
            weight = present.reshape(-1).to(giou.device, giou.dtype)
            if weight.shape != giou.shape:
                raise ValueError(f"present must hold one value per pair, got shape {tuple(present.shape)}")
            focal_normaliser = float(weight.numel())
            heatmap = heatmap * weight.view(-1, 1, 1, 1).to(heatmap.device)
            count = weight.sum().clamp(min=1.0)
            giou_term = (giou_per_sample * weight).sum() / count
            l1 = ((pred_boxes - target_boxes).abs().mean(dim=1) * weight).sum() / count
            giou_per_sample = torch.where(weight > 0, giou_per_sample, giou_term.detach())
            iou = iou[weight > 0]
        focal = focal_loss(score_map.float(), heatmap, normaliser=focal_normaliser)
        total = w.focal * focal + w.giou * giou_term + w.l1 * l1
        terms = {"focal": focal.item(), "giou": giou_term.item(), "l1": l1.item()}
        if bypass_probs is not None:
            tau = sparsity_target(giou_per_sample, w.tau0, w.sparsity_slope, w.adaptive_tau, w.sparsity_spread)
            spar = sparsity_loss(bypass_probs.float(), n_enf, tau)
            total = total + w.sparsity * spar
            terms["spar"] = spar.item()
            # How far the per-sample targets differ: near 0 means one target for every sample.
            terms["tau_std"] = tau.std(unbiased=False).item()
        if mask_l1 is not None:
            reg = w.vtp_l1 * mask_l1.float()  # eq. 6 with one alpha for every block
            total = total + reg
            terms["vtp_l1"] = reg.item()
        if teacher is not None:
            distill = distillation_loss(score_map, pred_boxes, *teacher)
            total = total + w.distill * distill
            terms["distill"] = distill.item()
        if quality is not None:
            quality_term = quality_loss(quality[0], score_map, quality[1], quality[2], target_boxes, present)
            total = total + w.quality * quality_term
            terms["quality"] = quality_term.item()
        terms["loss"] = total.item()
        return LossTerms(total=total, terms=terms, iou=iou.detach())
