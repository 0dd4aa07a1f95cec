"""The tracker plus its target state, behind one lock shared by the worker and the services.

The worker holds the lock for exactly one ``track`` call; init/reset requests and run-time
parameter changes take the same lock, so they land between two frames and never inside one.
"""
from __future__ import annotations

import threading
import uuid
from typing import Optional

import numpy as np

from abtrack_ros.tracking import STATE_TRACKING, Tracker, TrackResult

STATE_IDLE = "IDLE"


class TrackingSession:
    """One target at a time: initialize / track / reset, and the tunable tracker settings."""

    def __init__(self, tracker: Tracker) -> None:
        self._tracker = tracker
        self._lock = threading.Lock()
        self._target_id = ""
        self._state_name = STATE_IDLE
        self._init_stamp_ns = 0

    @property
    def state_name(self) -> str:
        return self._state_name

    @property
    def num_blocks(self) -> int:
        return self._tracker.num_blocks

    def initialize(self, frame: np.ndarray, box_xywh: list[float], stamp_ns: int) -> str:
        """Start a new target on the image stamped ``stamp_ns``; returns its new id.

        Raises ValueError for a bad frame or box (and then changes nothing).
        """
        with self._lock:
            self._tracker.initialize(frame, box_xywh)
            self._target_id = uuid.uuid4().hex[:12]
            self._state_name = STATE_TRACKING
            self._init_stamp_ns = stamp_ns
            return self._target_id

    def reset(self) -> bool:
        """Drop the target; False when there was none."""
        with self._lock:
            if self._state_name == STATE_IDLE:
                return False
            self._target_id = ""
            self._state_name = STATE_IDLE
            return True

    def track(self, frame: np.ndarray, stamp_ns: int) -> tuple[Optional[TrackResult], str]:
        """(result, target id) for the image stamped ``stamp_ns``, or (None, "") while idle.

        An image older than the one the target was initialised on (the worker may have taken it
        just before an init) is not tracked: its box would come from a newer template.
        """
        with self._lock:
            if self._state_name == STATE_IDLE or stamp_ns < self._init_stamp_ns:
                return None, ""
            result = self._tracker.track(frame)
            self._state_name = result.state
            return result, self._target_id

    def configure(
        self,
        bypass_enabled: Optional[bool] = None,
        bypass_threshold: Optional[float] = None,
        lost_score: Optional[float] = None,
    ) -> None:
        """Apply run-time settings between frames (None = leave as is)."""
        with self._lock:
            model = self._tracker.model
            if bypass_enabled is not None:
                model.bdm_enabled = bool(bypass_enabled)
            if bypass_threshold is not None:
                model.bypass_threshold = float(bypass_threshold)
            if lost_score is not None:
                self._tracker.cfg.lost_score = float(lost_score)
