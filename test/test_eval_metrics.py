"""Metrics against hand-computed values."""
import numpy as np
import pytest

from abtrack_ros.evaluation import metrics as m


def _gt(n):
    return np.tile(np.array([10.0, 10.0, 20.0, 10.0]), (n, 1))


def test_perfect_tracker():
    gt = _gt(5)
    s = m.SequenceScores.compute(gt.copy(), gt).summary()
    assert s["frames_scored"] == 4  # the init frame is not scored
    # IoU = 1 passes every threshold but t = 1 (IoU > t is strict, as in the toolkits).
    assert s["auc"] == pytest.approx(20 / 21)
    assert s["ao"] == 1.0 and s["sr50"] == 1.0 and s["sr75"] == 1.0
    assert s["precision"] == 1.0 and s["norm_precision"] == 1.0


def test_known_iou_sequence():
    # IoUs 0.2, 0.6, 0.8 on the three scored frames (shifts along x of a 20x10 box)
    gt = _gt(4)
    pred = gt.copy()
    for i, iou in enumerate([0.2, 0.6, 0.8], start=1):
        # shift dx gives IoU (20 - dx) / (20 + dx)
        pred[i, 0] += 20 * (1 - iou) / (1 + iou)
    s = m.SequenceScores.compute(pred, gt)
    np.testing.assert_allclose(s.ious, [0.2, 0.6, 0.8])
    # thresholds 0..0.15 -> 3/3, 0.2..0.55 -> 2/3 (0.2 > 0.2 is false), 0.6..0.75 -> 1/3, 0.8.. -> 0
    expected_curve = np.array([1] * 4 + [2 / 3] * 8 + [1 / 3] * 4 + [0] * 5)
    np.testing.assert_allclose(s.success(), expected_curve)
    summary = s.summary()
    assert summary["auc"] == pytest.approx(expected_curve.mean())
    assert summary["ao"] == pytest.approx(1.6 / 3)
    assert summary["sr50"] == pytest.approx(2 / 3) and summary["sr75"] == pytest.approx(1 / 3)
    # centre shifts: 13.33 px, 5 px, 2.22 px -> all within 20 px
    assert summary["precision"] == 1.0
    # normalised by w = 20: 0.667, 0.25, 0.111 -> one within 0.2
    assert summary["norm_precision"] == pytest.approx(1 / 3)


def test_absent_and_invalid_frames_are_excluded():
    gt = _gt(6)
    gt[2] = np.nan  # unknown
    gt[3, 2] = 0.0  # zero width
    visible = np.array([1, 1, 1, 1, 0, 1], bool)  # frame 4 marked absent
    pred = gt.copy()
    pred[4] = [500, 500, 5, 5]  # wrong, but on an absent frame: not scored
    pred[5] = np.nan  # missing prediction on a scored frame: a failure
    pred[2] = pred[3] = [0, 0, 1, 1]
    s = m.SequenceScores.compute(pred, gt, visible)
    assert s.num_frames == 2  # frames 1 and 5
    np.testing.assert_allclose(s.ious, [1.0, 0.0])
    assert s.center_err[1] == np.inf
    assert s.summary()["ao"] == pytest.approx(0.5)


def test_precision_threshold_is_inclusive_at_20px():
    gt = _gt(3)
    pred = gt.copy()
    pred[1, 0] += 20.0  # exactly 20 px
    pred[2, 0] += 20.5
    assert m.SequenceScores.compute(pred, gt).summary()["precision"] == pytest.approx(0.5)


def test_overall_weighting():
    # sequence A: 2 scored frames IoU 1; sequence B: 1 scored frame, prediction far away (IoU 0)
    gt_a, gt_b = _gt(3), _gt(2)
    pred_b = gt_b.copy()
    pred_b[1, 0] += 100
    parts = [m.SequenceScores.compute(gt_a.copy(), gt_a), m.SequenceScores.compute(pred_b, gt_b)]
    overall = m.overall_summary(parts)
    assert overall["ao"] == pytest.approx(2 / 3)  # frame-pooled (GOT-10k)
    assert overall["auc"] == pytest.approx((20 / 21 + 0) / 2)  # sequence mean (OTB/LaSOT)
    assert overall["precision"] == pytest.approx(0.5)
    assert overall["frames_scored"] == 3


def test_empty_and_bad_shapes():
    empty = m.SequenceScores.compute(_gt(1), _gt(1))
    assert empty.num_frames == 0 and np.isnan(empty.summary()["auc"])
    with pytest.raises(ValueError):
        m.SequenceScores.compute(np.zeros((3, 4)), np.zeros((2, 4)))
    assert m.fps(10, 0.5) == 20.0 and np.isnan(m.fps(10, 0.0))
