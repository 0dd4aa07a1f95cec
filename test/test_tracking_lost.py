"""The LOST state machine on hand-made confidence sequences, the re-acquisition search factor,
and the strict validation of the tracker config's thresholds."""
import dataclasses
import math

import pytest

from abtrack_ros.config import ABTrackConfig, ConfigError, TrackerConfig, config_from_dict, to_dict
from abtrack_ros.tracking import lost as L

T, LOST = L.STATE_TRACKING, L.STATE_LOST


def run(confidences, cfg):
    machine = L.LostStateMachine()
    return [machine.update(value, cfg) for value in confidences]


def test_hysteresis_on_a_hand_made_sequence():
    cfg = TrackerConfig(lost_score=0.3, lost_frames=2, found_score=0.7, found_frames=2)
    steps = run([0.9, 0.2, 0.9, 0.2, 0.2, 0.8, 0.5, 0.8, 0.8, 0.9], cfg)
    assert [(s.state, s.reason, s.frames_lost) for s in steps] == [
        (T, L.REASON_CONFIDENT, 0),
        (T, L.REASON_DOUBTFUL, 0),  # one low step of the two needed
        (T, L.REASON_CONFIDENT, 0),  # the low run starts over
        (T, L.REASON_DOUBTFUL, 0),
        (LOST, L.REASON_LOW_CONFIDENCE, 1),
        (LOST, L.REASON_CONFIRMING, 2),  # high, one of the two needed
        (LOST, L.REASON_SEARCHING, 3),  # 0.5 is above lost_score but below found_score: still LOST
        (LOST, L.REASON_CONFIRMING, 4),
        (T, L.REASON_REACQUIRED, 0),
        (T, L.REASON_CONFIDENT, 0),
    ]


def test_single_low_step_loses_and_hovering_between_thresholds_does_not_flicker():
    cfg = TrackerConfig(lost_score=0.3, lost_frames=1, found_score=0.6, found_frames=1)
    states = [s.state for s in run([0.29, 0.31, 0.59, 0.31, 0.6, 0.31, 0.31, 0.29], cfg)]
    assert states == [LOST, LOST, LOST, LOST, T, T, T, LOST]


def test_nan_confidence_counts_as_low_and_the_low_reason_is_passed_on():
    cfg = TrackerConfig(lost_score=0.3, found_score=0.5, found_frames=1)
    machine = L.LostStateMachine()
    step = machine.update(math.nan, cfg, L.REASON_COMPETING_PEAK)
    assert (step.state, step.reason) == (LOST, L.REASON_COMPETING_PEAK)
    assert machine.update(math.nan, cfg).reason == L.REASON_SEARCHING
    machine.reset()
    assert (machine.state, machine.frames_lost) == (T, 0)


def test_thresholds_changed_at_run_time_apply_at_once():
    cfg = TrackerConfig(lost_score=0.25, found_score=0.5, found_frames=1)
    machine = L.LostStateMachine()
    cfg.lost_score = 1.0  # as the node's lost_score parameter does: above found_score
    assert machine.update(0.9, cfg).state == LOST
    assert machine.update(0.9, cfg).state == LOST  # the found threshold is at least lost_score
    cfg.lost_score = 0.0
    assert machine.update(0.6, cfg).state == T


def test_search_factor_grows_while_lost_up_to_the_cap():
    cfg = TrackerConfig(search_factor=4.0, reacquire_growth=1.5, reacquire_max_factor=8.0)
    assert [L.search_factor(k, cfg) for k in range(4)] == [4.0, 6.0, 8.0, 8.0]
    assert L.search_factor(10, TrackerConfig(search_factor=4.0)) == 4.0  # default: no growth
    assert L.found_threshold(TrackerConfig(lost_score=0.25, found_score=0.7)) == 0.7


@pytest.mark.parametrize("overrides, key", [
    ({"lost_score": 0.8, "found_score": 0.7}, "found_score"),
    ({"lost_score": -0.1}, "lost_score"),
    ({"lost_score": math.nan}, "lost_score"),
    ({"found_score": 1.5}, "found_score"),
    ({"lost_frames": 0}, "lost_frames"),
    ({"found_frames": 0}, "found_frames"),
    ({"reacquire_growth": 0.9}, "reacquire_growth"),
    ({"reacquire_max_factor": 3.0}, "reacquire_max_factor"),
    ({"search_factor": 0.0}, "search_factor"),
    ({"confidence": {"jump": math.inf}}, "confidence.jump"),
    ({"confidence": {"no_such_cue": 1.0}}, "confidence.no_such_cue"),
    ({"lost_frames": 1.5}, "lost_frames"),
])
def test_config_rejects_bad_thresholds(overrides, key):
    data = to_dict(ABTrackConfig())
    data["tracker"] = {**data["tracker"], **overrides}
    if "confidence" in overrides:
        data["tracker"]["confidence"] = {**to_dict(TrackerConfig().confidence), **overrides["confidence"]}
    with pytest.raises(ConfigError, match=f"tracker.{key}"):
        config_from_dict(data)


def test_config_from_an_older_checkpoint_gets_the_new_defaults():
    old = {"tracker": {"template_factor": 2.0, "search_factor": 4.0, "hann_window": True, "lost_score": 0.25}}
    cfg = config_from_dict(old).tracker
    assert cfg == TrackerConfig(lost_score=0.25)  # its own threshold kept, every newer key defaulted


def test_scan_centres_cover_the_frame_nearest_first():
    side = 100.0
    cells = L.scan_centres(640, 360, side, origin=(600.0, 20.0))
    xs, ys = sorted({x for x, _ in cells}), sorted({y for _, y in cells})
    assert xs[0] == ys[0] == side / 2 and xs[-1] == 640 - side / 2 and ys[-1] == 360 - side / 2
    assert len(cells) == len(xs) * len(ys) == 9 * 5  # ceil(540 / 75) + 1 columns, ceil(260 / 75) + 1 rows
    assert max(b - a for a, b in zip(xs, xs[1:])) <= L.SCAN_STEP_FRACTION * side  # crops overlap
    assert cells[0] == (590.0, 50.0)  # the cell nearest the last tracked position comes first
    distances = [math.hypot(x - 600.0, y - 20.0) for x, y in cells]
    assert distances == sorted(distances)
    assert L.scan_centres(80, 60, side, origin=(0.0, 0.0)) == [(40.0, 30.0)]  # a crop larger than the frame


def test_scan_steps_come_every_nth_lost_step_unless_the_candidate_is_confident():
    cfg = TrackerConfig(lost_score=0.45, found_score=0.75, reacquire_scan_every=2, reacquire_scan_after=0)
    assert [L.is_scan_step(n, 0.1, cfg) for n in range(6)] == [False, False, True, False, True, False]
    waiting = dataclasses.replace(cfg, reacquire_scan_after=3)  # the first scan after 3 LOST steps
    assert [n for n in range(9) if L.is_scan_step(n, 0.1, waiting)] == [3, 5, 7]
    assert not L.is_scan_step(2, 0.8, cfg)  # a confident candidate is confirmed where it is
    assert not L.is_scan_step(2, math.nan, TrackerConfig())  # off by default
    assert L.is_scan_step(1, math.nan, dataclasses.replace(cfg, reacquire_scan_every=1))
    with pytest.raises(ConfigError, match="reacquire_scan_every"):
        TrackerConfig(reacquire_scan_every=-1)
    with pytest.raises(ConfigError, match="reacquire_scan_after"):
        TrackerConfig(reacquire_scan_after=-1)
