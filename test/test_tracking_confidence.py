"""Confidence cues on hand-made score maps and boxes, and their logistic combination."""
import math

import numpy as np
import pytest

from abtrack_ros.config import ConfidenceWeights, TrackerConfig
from abtrack_ros.tracking import confidence as c

SIZE = 8
FLOOR = 1e-4  # what the head's clamped sigmoid gives on empty cells


def single_peak() -> tuple[np.ndarray, tuple[int, int]]:
    score_map = np.full((SIZE, SIZE), FLOOR, np.float32)
    score_map[4, 4] = 0.9
    return score_map, (4, 4)


def two_equal_peaks() -> tuple[np.ndarray, tuple[int, int]]:
    score_map = np.full((SIZE, SIZE), FLOOR, np.float32)
    score_map[1, 1] = score_map[6, 6] = 0.9
    return score_map, (1, 1)


def flat() -> tuple[np.ndarray, tuple[int, int]]:
    return np.full((SIZE, SIZE), 0.5, np.float32), (3, 4)


def test_single_sharp_peak_is_sharp_without_competitor():
    score_map, peak = single_peak()
    assert c.sharpness(score_map, peak, 1) == pytest.approx((0.9 + 8 * FLOOR) / (0.9 + 63 * FLOOR))  # ~0.994
    assert c.competitor(score_map, peak, 1) == pytest.approx(FLOOR / 0.9, rel=1e-3)


def test_two_equal_peaks_split_the_mass_and_compete():
    score_map, peak = two_equal_peaks()
    assert c.sharpness(score_map, peak, 1) == pytest.approx((0.9 + 8 * FLOOR) / (1.8 + 62 * FLOOR))  # ~0.5
    assert c.competitor(score_map, peak, 1) == pytest.approx(1.0)


def test_flat_map_has_the_near_cells_share_and_a_full_competitor():
    score_map, peak = flat()
    assert c.sharpness(score_map, peak, 1) == pytest.approx(9 / 64)
    assert c.sharpness(score_map, (0, 0), 1) == pytest.approx(4 / 64)  # a corner has fewer neighbours
    assert c.competitor(score_map, peak, 1) == pytest.approx(1.0)


def test_competitor_is_capped_and_zero_when_nothing_is_far():
    score_map = np.full((SIZE, SIZE), FLOOR, np.float32)
    score_map[0, 0], score_map[7, 7] = 0.01, 0.9  # the windowed choice can be the weaker peak
    assert c.competitor(score_map, (0, 0), 1) == c.COMPETITOR_CAP
    assert c.competitor(np.ones((3, 3)), (1, 1), 1) == 0.0
    assert c.sharpness(np.zeros((SIZE, SIZE)), (0, 0), 1) == 0.0


def test_combined_confidence_orders_the_three_maps():
    box = np.array([10.0, 10.0, 20.0, 20.0])
    frame = np.zeros((40, 40, 3), np.uint8)
    confidences = [c.combine(c.step_cues(m, p, 1, box, box, frame, None), TrackerConfig().confidence)
                   for m, p in (single_peak(), two_equal_peaks(), flat())]
    assert confidences[0] > confidences[1] > confidences[2]
    assert all(0.0 <= v <= 1.0 for v in confidences)


def test_temporal_cues():
    previous = np.array([0.0, 0.0, 10.0, 40.0])  # size sqrt(10 * 40) = 20, centre (5, 20)
    assert c.jump(previous, previous) == 0.0 and c.size_change(previous, previous) == 0.0
    assert c.jump(np.array([30.0, 0.0, 10.0, 40.0]), previous) == pytest.approx(1.5)  # 30 px / 20 px
    assert c.jump(np.array([500.0, 0.0, 10.0, 40.0]), previous) == c.JUMP_CAP
    doubled = np.array([0.0, 0.0, 20.0, 80.0])  # sides x2
    assert c.size_change(doubled, previous) == pytest.approx(math.log(2.0))
    assert c.size_change(previous, doubled) == pytest.approx(math.log(2.0))
    assert c.size_change(np.array([0.0, 0.0, 1e-9, 1e-9]), previous) == c.SIZE_CHANGE_CAP


def test_peak_logit_radius_and_combine_edge_cases():
    assert c.peak_logit(0.5) == 0.0
    assert math.isfinite(c.peak_logit(0.0)) and math.isfinite(c.peak_logit(1.0))
    assert c.cue_radius(8, 4.0) == 1 and c.cue_radius(16, 4.0) == 2 and c.cue_radius(16, 8.0) == 1
    assert c.cue_radius(4, 4.0) == 1  # at least one cell
    cues = dict.fromkeys(c.CUE_NAMES, 0.0)
    assert c.combine(cues, ConfidenceWeights(bias=0.0)) == 0.5
    assert c.combine(cues, ConfidenceWeights(bias=1e6)) == 1.0
    assert c.combine(cues, ConfidenceWeights(bias=-1e6)) == pytest.approx(0.0)
    assert c.combine({**cues, "jump": math.nan}, ConfidenceWeights()) == 0.0
    assert set(c.CUE_NAMES) == {"peak_logit", "sharpness", "competitor", "jump", "size_change", "appearance",
                                "quality_logit"}


def test_appearance_matches_the_target_colours_not_another_colour():
    frame = np.zeros((60, 120, 3), np.uint8)
    frame[10:40, 10:40] = (200, 40, 40)  # the target: red
    frame[10:40, 70:100] = (40, 40, 200)  # a look-alike of another colour: blue
    template = c.colour_histogram(frame, np.array([10.0, 10.0, 30.0, 30.0]))
    assert template is not None and template.sum() == pytest.approx(1.0)
    assert c.appearance(c.colour_histogram(frame, np.array([12.0, 11.0, 30.0, 30.0])), template) == pytest.approx(1.0)
    assert c.appearance(c.colour_histogram(frame, np.array([70.0, 10.0, 30.0, 30.0])), template) == pytest.approx(0.0)
    # Half on the target: in between.
    assert 0.2 < c.appearance(c.colour_histogram(frame, np.array([25.0, 10.0, 30.0, 30.0])), template) < 0.9


def test_appearance_is_neutral_without_enough_pixels():
    frame = np.zeros((20, 20, 3), np.uint8)
    assert c.colour_histogram(frame, np.array([0.0, 0.0, 3.0, 3.0])) is None  # too small
    assert c.colour_histogram(frame, np.array([30.0, 30.0, 10.0, 10.0])) is None  # outside
    template = c.colour_histogram(frame, np.array([0.0, 0.0, 20.0, 20.0]))
    assert c.appearance(None, template) == c.NEUTRAL_APPEARANCE == c.appearance(template, None)


def test_smoothed_logit_is_a_moving_average_restarted_per_track():
    assert c.smoothed_logit(None, -3.0, 0.7) == -3.0  # a track's first step is its own
    assert c.smoothed_logit(2.0, -3.0, 0.0) == -3.0  # off: each step's own
    assert c.smoothed_logit(2.0, -3.0, 0.7) == pytest.approx(0.7 * 2.0 + 0.3 * -3.0)
    steps, logit = [4.0, 4.0, -4.0, -4.0, -4.0], None
    trace = []
    for z in steps:
        logit = c.smoothed_logit(logit, z, 0.5)
        trace.append(logit)
    assert trace == [4.0, 4.0, 0.0, -2.0, -3.0]  # a lasting drop shows at once and deepens
    assert c.probability(0.0) == 0.5 and c.probability(-c.LOGIT_CLIP) == 0.0 and c.probability(1e9) == 1.0
    cues = dict.fromkeys(c.CUE_NAMES, 0.0)
    assert c.step_logit({**cues, "jump": math.nan}, ConfidenceWeights()) == -c.LOGIT_CLIP
    assert c.step_logit(cues, ConfidenceWeights(bias=1e6)) == c.LOGIT_CLIP
    with pytest.raises(Exception, match="confidence_smoothing"):
        TrackerConfig(confidence_smoothing=1.0)
