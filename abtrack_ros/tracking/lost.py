"""The LOST state: hysteresis on the confidence, and the wider search that re-acquires the target.

TRACKING -> LOST when the confidence is below ``lost_score`` on ``lost_frames`` consecutive steps;
LOST -> TRACKING only when it is at or above ``found_score`` (never below ``lost_score``) on
``found_frames`` consecutive steps. The two thresholds keep a confidence that hovers around one
of them from flickering the state. Thresholds are read from the config at every step, so a
change between frames (a ROS parameter) applies at once.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from abtrack_ros.config import TrackerConfig

# Scan cells are this share of the crop side apart: neighbouring crops overlap by a quarter, so
# a target anywhere in the frame lies well inside at least one of them.
SCAN_STEP_FRACTION = 0.75

STATE_TRACKING = "TRACKING"
STATE_LOST = "LOST"

# TrackResult.state_reason values.
REASON_CONFIDENT = "confident"  # TRACKING, confidence at or above lost_score
REASON_DOUBTFUL = "low confidence, not yet lost"  # TRACKING, below lost_score on fewer than lost_frames steps
REASON_LOW_CONFIDENCE = "low confidence"  # LOST: entered on a low confidence
REASON_COMPETING_PEAK = "competing peak"  # LOST: entered on a low confidence with a look-alike in view
REASON_SEARCHING = "searching"  # LOST, confidence below found_score
REASON_CONFIRMING = "confirming"  # LOST, at or above found_score on fewer than found_frames steps
REASON_REACQUIRED = "re-acquired"  # TRACKING again after LOST (the step of the switch)


@dataclass
class StateStep:
    """The state after one step and why."""

    state: str
    reason: str
    frames_lost: int  # consecutive LOST steps, this one included (0 while TRACKING)


class LostStateMachine:
    """TRACKING / LOST with hysteresis, fed one confidence per step."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Back to TRACKING (a new target)."""
        self.state = STATE_TRACKING
        self.frames_lost = 0
        self._low_run = 0  # consecutive steps below lost_score while TRACKING
        self._high_run = 0  # consecutive steps at or above the found threshold while LOST

    def update(self, confidence: float, cfg: TrackerConfig, low_reason: str = REASON_LOW_CONFIDENCE) -> StateStep:
        """Advance by one step. ``low_reason`` names why a low confidence is low (the reason
        given when the step enters LOST). A NaN confidence counts as low."""
        if self.state == STATE_TRACKING:
            return self._while_tracking(confidence, cfg, low_reason)
        return self._while_lost(confidence, cfg)

    def _while_tracking(self, confidence: float, cfg: TrackerConfig, low_reason: str) -> StateStep:
        if confidence >= cfg.lost_score:
            self._low_run = 0
            return StateStep(STATE_TRACKING, REASON_CONFIDENT, 0)
        self._low_run += 1
        if self._low_run < cfg.lost_frames:
            return StateStep(STATE_TRACKING, REASON_DOUBTFUL, 0)
        self.state, self.frames_lost, self._low_run, self._high_run = STATE_LOST, 1, 0, 0
        return StateStep(STATE_LOST, low_reason, 1)

    def _while_lost(self, confidence: float, cfg: TrackerConfig) -> StateStep:
        if not confidence >= found_threshold(cfg):
            self._high_run = 0
            self.frames_lost += 1
            return StateStep(STATE_LOST, REASON_SEARCHING, self.frames_lost)
        self._high_run += 1
        if self._high_run < cfg.found_frames:
            self.frames_lost += 1
            return StateStep(STATE_LOST, REASON_CONFIRMING, self.frames_lost)
        self.reset()
        return StateStep(STATE_TRACKING, REASON_REACQUIRED, 0)


def found_threshold(cfg: TrackerConfig) -> float:
    """The confidence that counts towards leaving LOST: found_score, never below lost_score (which
    may be raised at run time above found_score)."""
    return max(cfg.found_score, cfg.lost_score)


def search_factor(frames_lost: int, cfg: TrackerConfig) -> float:
    """Search crop side, in target sizes, for the step after ``frames_lost`` consecutive LOST steps:
    the normal ``search_factor`` while TRACKING, then x ``reacquire_growth`` per LOST step up to
    ``reacquire_max_factor``."""
    if frames_lost <= 0:
        return cfg.search_factor
    return min(cfg.search_factor * cfg.reacquire_growth ** frames_lost, cfg.reacquire_max_factor)


def is_scan_step(frames_lost: int, last_confidence: float, cfg: TrackerConfig) -> bool:
    """Whether the step after ``frames_lost`` consecutive LOST steps searches the next cell of the
    frame scan: from ``reacquire_scan_after`` LOST steps on, every ``reacquire_scan_every``-th,
    unless the latest candidate is already confident enough to count towards re-acquisition
    (then the search stays on it)."""
    every, after = cfg.reacquire_scan_every, cfg.reacquire_scan_after
    return (bool(every) and frames_lost >= max(after, 1) and (frames_lost - after) % every == 0
            and not last_confidence >= found_threshold(cfg))


def scan_centres(frame_w: int, frame_h: int, side: float, origin: tuple[float, float]) -> list[tuple[float, float]]:
    """Centres of crops of ``side`` pixels that cover the frame, SCAN_STEP_FRACTION * side apart,
    nearest to ``origin`` (where the target was last tracked) first; ties in raster order."""
    def axis(length: int) -> list[float]:
        if side >= length:
            return [length / 2.0]
        count = math.ceil((length - side) / (SCAN_STEP_FRACTION * side)) + 1
        step = (length - side) / (count - 1)
        return [side / 2.0 + i * step for i in range(count)]

    cells = [(x, y) for y in axis(frame_h) for x in axis(frame_w)]
    return sorted(cells, key=lambda c: math.hypot(c[0] - origin[0], c[1] - origin[1]))
