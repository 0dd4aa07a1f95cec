"""Losses of the training pipeline against hand-computed values."""
import math

import pytest
import torch

from abtrack_ros.training.losses import (
    LossWeights,
    TrackingCriterion,
    distillation_loss,
    focal_loss,
    gaussian_heatmap,
    gaussian_radius,
    giou_and_iou,
    l1_box_loss,
    quality_loss,
    sparsity_loss,
    sparsity_target,
)


def _iou_xyxy(a, b):
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union


def test_gaussian_radius_square_box_is_the_shrunk_case():
    # w = h = 2, overlap 0.5: shrink inward by r -> (2 - 2r)^2 / 4 = 0.5 -> r = 1 - 1/sqrt(2);
    # growing gives sqrt(2) - 1 and shifting gives (4 - sqrt(32/3)) / 2, both larger.
    r = gaussian_radius(2.0, 2.0, min_overlap=0.5)
    assert r == pytest.approx(1.0 - 1.0 / math.sqrt(2.0))
    assert (4.0 - math.sqrt(32.0 / 3.0)) / 2.0 > r and math.sqrt(2.0) - 1.0 > r


@pytest.mark.parametrize("w,h", [(4.0, 4.0), (3.0, 7.0), (1.5, 10.0)])
def test_gaussian_radius_keeps_every_corner_case_at_or_above_the_overlap(w, h):
    r = gaussian_radius(w, h, 0.7)
    box = (0.0, 0.0, w, h)
    shifted = (r, r, w + r, h + r)
    shrunk = (r, r, w - r, h - r)
    grown = (-r, -r, w + r, h + r)
    ious = [_iou_xyxy(box, b) for b in (shifted, shrunk, grown)]
    assert min(ious) == pytest.approx(0.7, abs=1e-9)  # the binding case sits exactly at 0.7
    assert all(iou >= 0.7 - 1e-9 for iou in ious)


def test_gaussian_heatmap_peak_and_shape():
    # Box centre (0.53, 0.22) on a 16 map -> cell (row 3, col 8); radius for a 4x4-cell box.
    heat = gaussian_heatmap(torch.tensor([[0.53, 0.22, 0.25, 0.25]]), 16)
    assert heat.shape == (1, 1, 16, 16)
    assert heat[0, 0, 3, 8] == 1.0 and int((heat == 1.0).sum()) == 1
    sigma = (2.0 * gaussian_radius(4.0, 4.0) + 1.0) / 6.0
    assert heat[0, 0, 3, 9].item() == pytest.approx(math.exp(-1.0 / (2 * sigma**2)), rel=1e-5)
    assert heat[0, 0, 4, 9].item() == pytest.approx(math.exp(-2.0 / (2 * sigma**2)), rel=1e-5)


def test_gaussian_heatmap_clamps_centres_on_the_border():
    heat = gaussian_heatmap(torch.tensor([[1.0, 0.0, 0.2, 0.2]]), 16)
    assert heat[0, 0, 0, 15] == 1.0


def test_focal_loss_hand_values():
    # 1 positive (p=0.8), one negative near it (target 0.5, p=0.4), one far negative (target 0, p=0.1).
    pred = torch.tensor([[[[0.8, 0.4, 0.1]]]])
    target = torch.tensor([[[[1.0, 0.5, 0.0]]]])
    pos = math.log(0.8) * 0.2**2
    near = math.log(0.6) * 0.4**2 * 0.5**4
    far = math.log(0.9) * 0.1**2 * 1.0
    expected = -(pos + near + far) / 1.0
    assert focal_loss(pred, target).item() == pytest.approx(expected, rel=1e-5)


def test_focal_loss_prefers_the_right_peak_and_rejects_bad_shapes():
    target = gaussian_heatmap(torch.tensor([[0.5, 0.5, 0.25, 0.25]]), 16)
    good = target.clamp(0.01, 0.99)
    bad = torch.roll(good, shifts=5, dims=3)
    assert focal_loss(good, target) < focal_loss(bad, target)
    with pytest.raises(ValueError):
        focal_loss(torch.zeros(1, 1, 8, 8), target)


def test_giou_and_iou_hand_values():
    # pred xyxy (0,0,2,2), target (1,1,3,3): inter 1, union 7, hull 9 -> iou 1/7, giou 1/7 - 2/9.
    pred = torch.tensor([[1.0, 1.0, 2.0, 2.0]])
    target = torch.tensor([[2.0, 2.0, 2.0, 2.0]])
    giou, iou = giou_and_iou(pred, target)
    assert iou.item() == pytest.approx(1 / 7, rel=1e-5)
    assert giou.item() == pytest.approx(1 / 7 - 2 / 9, rel=1e-5)
    # Identical boxes: giou = iou = 1.
    same, _ = giou_and_iou(target, target)
    assert same.item() == pytest.approx(1.0, abs=1e-6)
    # Disjoint: xyxy (.05,.05,.15,.15) and (.85,.85,.95,.95): iou 0, union .02, hull .81.
    far, far_iou = giou_and_iou(torch.tensor([[0.1, 0.1, 0.1, 0.1]]), torch.tensor([[0.9, 0.9, 0.1, 0.1]]))
    assert far_iou.item() == 0.0 and far.item() == pytest.approx(-(0.81 - 0.02) / 0.81, rel=1e-5)


def test_l1_box_loss_is_the_mean_abs_error():
    pred = torch.tensor([[0.5, 0.5, 0.2, 0.2], [0.1, 0.1, 0.1, 0.1]])
    target = torch.tensor([[0.6, 0.5, 0.2, 0.4], [0.1, 0.1, 0.1, 0.1]])
    assert l1_box_loss(pred, target).item() == pytest.approx((0.1 + 0.2) / 8, rel=1e-5)


def test_sparsity_target_sign_harder_sample_gets_lower_target():
    giou_loss = torch.tensor([0.2, 0.6, 1.0])  # mean 0.6
    tau = sparsity_target(giou_loss, tau0=0.4, slope=0.1)
    assert tau.tolist() == pytest.approx([0.44, 0.40, 0.36])
    assert sparsity_target(giou_loss, tau0=0.4, slope=0.1, adaptive=False).tolist() == pytest.approx([0.4] * 3)
    clipped = sparsity_target(torch.tensor([0.0, 20.0]), tau0=0.4, slope=0.1)
    assert clipped.tolist() == pytest.approx([1.0, 0.0])


def test_sparsity_target_is_detached():
    loss = torch.tensor([0.3, 0.9], requires_grad=True)
    assert not sparsity_target(loss, 0.4, 0.1).requires_grad


def test_sparsity_loss_hand_values_and_gradient_sign():
    # N = 5, n_enf = 2: optional blocks are columns 2..4.
    probs = torch.tensor([[0.0, 0.0, 0.2, 0.4, 0.6], [0.0, 0.0, 0.9, 0.9, 0.9]], requires_grad=True)
    tau = torch.tensor([0.5, 0.5])
    loss = sparsity_loss(probs, n_enf=2, tau=tau)
    assert loss.item() == pytest.approx((0.1 + 0.4) / 2, rel=1e-5)
    loss.backward()
    # Below target -> the gradient step raises p; above target -> lowers it; enforced blocks untouched.
    assert torch.all(probs.grad[0, 2:] < 0) and torch.all(probs.grad[1, 2:] > 0)
    assert torch.all(probs.grad[:, :2] == 0)
    with pytest.raises(ValueError):
        sparsity_loss(probs, n_enf=5, tau=tau)


def test_criterion_combines_the_terms_with_their_weights():
    torch.manual_seed(0)
    target = torch.tensor([[0.5, 0.5, 0.25, 0.25], [0.3, 0.6, 0.2, 0.3]])
    pred = torch.tensor([[0.55, 0.5, 0.2, 0.25], [0.3, 0.6, 0.3, 0.3]])
    score = torch.rand(2, 1, 16, 16)
    probs = torch.tensor([[0.0, 0.3, 0.7], [0.0, 0.5, 0.5]])
    mask_l1 = torch.tensor(4.0)  # e.g. four mask entries at 1.0
    crit = TrackingCriterion(LossWeights(), map_size=16)
    out = crit(score, pred, target, bypass_probs=probs, n_enf=1, mask_l1=mask_l1)
    giou, iou = giou_and_iou(pred, target)
    tau = sparsity_target(1 - giou, 0.4, 0.1)
    expected = (
        focal_loss(score, gaussian_heatmap(target, 16))
        + 2 * (1 - giou).mean()
        + 5 * l1_box_loss(pred, target)
        + 5 * sparsity_loss(probs, 1, tau)
        + 4e-4
    )
    assert out.total.item() == pytest.approx(expected.item(), rel=1e-5)
    assert set(out.terms) == {"focal", "giou", "l1", "spar", "tau_std", "vtp_l1", "loss"}
    assert out.iou.tolist() == pytest.approx(iou.tolist())


def test_distillation_loss_is_zero_on_the_teacher_and_trains_only_the_student():
    torch.manual_seed(0)
    teacher_map, teacher_boxes = torch.rand(2, 1, 8, 8), torch.tensor([[0.5, 0.5, 0.2, 0.3], [0.4, 0.6, 0.3, 0.3]])
    assert distillation_loss(teacher_map, teacher_boxes, teacher_map, teacher_boxes).item() == pytest.approx(0.0, abs=1e-6)
    student_map = torch.rand(2, 1, 8, 8, requires_grad=True)
    student_boxes = (teacher_boxes + 0.05).requires_grad_(True)
    teacher_map.requires_grad_(True)
    loss = distillation_loss(student_map, student_boxes, teacher_map, teacher_boxes)
    p, t = student_map.detach(), teacher_map.detach()
    kl = (t * torch.log(t / p) + (1 - t) * torch.log((1 - t) / (1 - p))).mean()
    assert loss.item() == pytest.approx(kl.item() + 0.05, rel=1e-5)
    loss.backward()
    assert teacher_map.grad is None  # the teacher is a target, not a gradient path
    # A step along -grad moves the student's map toward the teacher's.
    moved = (student_map - 0.1 * student_map.grad).clamp(1e-6, 1 - 1e-6)
    assert distillation_loss(moved, teacher_boxes, t, teacher_boxes) < distillation_loss(p, teacher_boxes, t, teacher_boxes)


def test_criterion_adds_the_weighted_distillation_term():
    target = torch.tensor([[0.5, 0.5, 0.25, 0.25]])
    pred = torch.tensor([[0.55, 0.5, 0.2, 0.25]])
    score, teacher_score = torch.full((1, 1, 16, 16), 0.2), torch.full((1, 1, 16, 16), 0.3)
    plain = TrackingCriterion(LossWeights(), map_size=16)(score, pred, target)
    crit = TrackingCriterion(LossWeights(distill=10.0), map_size=16)
    out = crit(score, pred, target, teacher=(teacher_score, target))
    term = distillation_loss(score, pred, teacher_score, target)
    assert out.terms["distill"] == pytest.approx(term.item())
    assert out.total.item() == pytest.approx(plain.total.item() + 10.0 * term.item(), rel=1e-5)


def test_standardised_spread_is_scale_free():
    losses = torch.tensor([0.10, 0.20, 0.30, 0.40])
    tau = sparsity_target(losses, tau0=0.5, slope=0.1, spread="standardised")
    z = (losses - losses.mean()) / losses.std(unbiased=False)
    assert tau.tolist() == pytest.approx((0.5 - 0.1 * z).tolist())
    # The same ranking at a tenth of the loss spread gives the same targets (the paper's does not).
    assert sparsity_target(losses / 10, 0.5, 0.1, spread="standardised").tolist() == pytest.approx(tau.tolist())
    assert sparsity_target(losses / 10, 0.5, 0.1).tolist() != pytest.approx(sparsity_target(losses, 0.5, 0.1).tolist())
    # A uniform batch (or a batch of one) gets tau0; unknown names are refused.
    assert sparsity_target(torch.full((3,), 0.2), 0.5, 0.1, spread="standardised").tolist() == pytest.approx([0.5] * 3)
    assert sparsity_target(torch.tensor([0.7]), 0.5, 0.1, spread="standardised").tolist() == pytest.approx([0.5])
    with pytest.raises(ValueError, match="unknown sparsity spread"):
        sparsity_target(losses, 0.5, 0.1, spread="rank")


def test_criterion_with_a_negative_pair():
    """A pair whose target is out of the search crop: its box is not scored, its whole score map
    is a negative, and its sparsity target is tau0's neighbour (the batch's average loss)."""
    torch.manual_seed(1)
    target = torch.tensor([[0.5, 0.5, 0.25, 0.25], [0.0, 0.0, 0.0, 0.0]])
    pred = torch.tensor([[0.55, 0.5, 0.2, 0.25], [0.9, 0.1, 0.3, 0.3]])
    score = torch.rand(2, 1, 16, 16) * 0.5
    crit = TrackingCriterion(LossWeights(), map_size=16)
    present = torch.tensor([1.0, 0.0])
    out = crit(score, pred, target, present=present)
    giou, iou = giou_and_iou(pred[:1], target[:1])
    heatmap = torch.cat([gaussian_heatmap(target[:1], 16), torch.zeros(1, 1, 16, 16)])
    # the focal sum over both maps, per pair (not per positive: the negative has none)
    expected = focal_loss(score, heatmap, normaliser=2.0) + 2 * (1 - giou).mean() + 5 * l1_box_loss(pred[:1], target[:1])
    assert out.total.item() == pytest.approx(expected.item(), rel=1e-5)
    assert out.iou.tolist() == pytest.approx(iou.tolist())
    # the negative's box does not matter ...
    moved = pred.clone()
    moved[1] = torch.tensor([0.2, 0.7, 0.1, 0.5])
    assert crit(score, moved, target, present=present).total.item() == pytest.approx(out.total.item(), rel=1e-6)
    # ... its score map does: a confident peak on a negative costs
    peaked = score.clone()
    peaked[1, 0, 3, 3] = 0.95
    assert crit(score, pred, target, present=present).total < crit(peaked, pred, target, present=present).total
    # all present: the same loss as without the mask
    both = torch.tensor([[0.5, 0.5, 0.25, 0.25], [0.3, 0.6, 0.2, 0.3]])
    plain = crit(score, pred, both).total.item()
    assert crit(score, pred, both, present=torch.ones(2)).total.item() == pytest.approx(plain, rel=1e-6)
    # sparsity: the negative gets the target of a pair with the present pairs' mean loss
    three_targets = torch.tensor([[0.5, 0.5, 0.25, 0.25], [0.0, 0.0, 0.0, 0.0], [0.3, 0.6, 0.2, 0.3]])
    three_preds = torch.tensor([[0.55, 0.5, 0.2, 0.25], [0.9, 0.1, 0.3, 0.3], [0.3, 0.62, 0.3, 0.2]])
    probs = torch.tensor([[0.0, 0.3, 0.7], [0.0, 0.5, 0.5], [0.0, 0.2, 0.2]])
    with_probs = crit(torch.rand(3, 1, 16, 16) * 0.5, three_preds, three_targets, bypass_probs=probs, n_enf=1,
                      present=torch.tensor([1.0, 0.0, 1.0]))
    present_loss = 1 - giou_and_iou(three_preds[[0, 2]], three_targets[[0, 2]])[0]
    tau = sparsity_target(torch.stack([present_loss[0], present_loss.mean(), present_loss[1]]), 0.4, 0.1)
    assert with_probs.terms["spar"] == pytest.approx(sparsity_loss(probs, 1, tau).item(), rel=1e-5)
    # a batch of negative pairs only: finite, no box terms, no IoU, the maps' focal per pair
    only = crit(score, pred, target, present=torch.zeros(2))
    assert torch.isfinite(only.total) and only.iou.numel() == 0
    assert only.terms["giou"] == 0.0 and only.terms["l1"] == 0.0
    assert only.terms["focal"] == pytest.approx(focal_loss(score, torch.zeros_like(score), normaliser=2.0).item(), rel=1e-5)
    with pytest.raises(ValueError, match="one value per pair"):
        crit(score, pred, target, present=torch.ones(3))


def test_quality_loss_is_zero_when_the_map_predicts_each_cells_iou():
    offset = torch.zeros(1, 2, 2, 2)
    size = torch.full((1, 2, 2, 2), 0.2)
    offset[0, :, 0, 0] = 0.5  # cell (0, 0): centre (0.25, 0.25), the target exactly
    offset[0, :, 0, 1] = torch.tensor([-0.3, 0.5])  # cell (0, 1): centre (0.35, 0.25), shifted by half a side
    target = torch.tensor([[0.25, 0.25, 0.2, 0.2]])
    # by hand: shifted by half the side, the overlap is half a box: IoU = 0.5 / 1.5
    truth = torch.tensor([[[[1.0, 1.0 / 3.0], [0.0, 0.0]]]])
    score = torch.tensor([[[[0.9, 0.3], [0.01, 0.01]]]])
    assert float(quality_loss(truth, score, offset, size, target)) == pytest.approx(0.0, abs=1e-5)
    wrong = truth.clone()
    wrong[0, 0, 0, 1] = 0.9
    assert float(quality_loss(wrong, score, offset, size, target)) > 0.01
    # a negative pair (target outside the crop): every cell's IoU target is 0
    zeros = torch.full_like(truth, 1e-6)
    assert float(quality_loss(zeros, score, offset, size, target, present=torch.tensor([0.0]))) \
        == pytest.approx(0.0, abs=1e-4)
    assert float(quality_loss(truth, score, offset, size, target, present=torch.tensor([0.0]))) > 1.0


def test_quality_loss_follows_the_high_scoring_cells_and_trains_only_the_quality_map():
    offset = torch.zeros(1, 2, 2, 2)
    size = torch.full((1, 2, 2, 2), 0.2)
    offset[0, :, 0, 0] = 0.5
    target = torch.tensor([[0.25, 0.25, 0.2, 0.2]])
    truth = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])
    score = torch.tensor([[[[0.1, 0.9], [0.01, 0.01]]]])  # a look-alike's peak at cell (0, 1)
    wrong_at_peak = truth.clone()
    wrong_at_peak[0, 0, 0, 1] = 0.8  # confident on the look-alike
    wrong_elsewhere = truth.clone()
    wrong_elsewhere[0, 0, 1, 0] = 0.8  # the same error on a cell nobody would choose
    assert quality_loss(wrong_at_peak, score, offset, size, target) > \
        2 * quality_loss(wrong_elsewhere, score, offset, size, target)
    quality = wrong_at_peak.clone().requires_grad_(True)
    offset.requires_grad_(True)
    size.requires_grad_(True)
    score.requires_grad_(True)
    quality_loss(quality, score, offset, size, target).backward()
    assert float(quality.grad.abs().sum()) > 0
    assert offset.grad is None and size.grad is None and score.grad is None


def test_criterion_adds_the_weighted_quality_term():
    offset = torch.zeros(2, 2, 2, 2)
    size = torch.full((2, 2, 2, 2), 0.2)
    score = torch.rand(2, 1, 2, 2, generator=torch.Generator().manual_seed(0))
    quality = torch.full((2, 1, 2, 2), 0.5)
    boxes = torch.tensor([[0.3, 0.3, 0.2, 0.2], [0.6, 0.6, 0.3, 0.3]])
    target = torch.tensor([[0.25, 0.25, 0.2, 0.2], [0.5, 0.5, 0.3, 0.3]])
    plain = TrackingCriterion(LossWeights(), map_size=2)(score, boxes, target)
    with_quality = TrackingCriterion(LossWeights(quality=3.0), map_size=2)(
        score, boxes, target, quality=(quality, offset, size))
    expected = float(quality_loss(quality, score, offset, size, target))
    assert with_quality.terms["quality"] == pytest.approx(expected)
    assert float(with_quality.total) == pytest.approx(float(plain.total) + 3.0 * expected, rel=1e-6)
    assert "quality" not in plain.terms
