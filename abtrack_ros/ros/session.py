"""The tracker plus its target state, behind one lock shared by the worker and the services.

The worker holds the lock for exactly one ``track`` call; init/reset requests and run-time
parameter changes take the same lock, so they land between two frames and never inside one.
"""
from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass
from typing import Optional

import numpy as np

from abtrack_ros.tracking import STATE_TRACKING, Tracker, TrackResult
from abtrack_ros.tracking.lost import found_threshold

STATE_IDLE = "IDLE"
# An image stamped this much before the newest image of the target means the clock went back
# (a bag played in a loop, a simulator reset), not a frame that arrived a little late.
CLOCK_JUMP_BACK_NS = 1_000_000_000


@dataclass(frozen=True)
class Step:
    """What one frame did to the session: a result, or why there is none."""

    result: Optional[TrackResult] = None
    target_id: str = ""
    skipped: str = ""  # why a frame was not tracked although a target is set; "" otherwise
    clock_jump: bool = False  # the target was dropped because the stamps went back


class TrackingSession:
    """One target at a time: initialize / track / reset, and the tunable tracker settings."""

    def __init__(self, tracker: Tracker) -> None:
        self._tracker = tracker
        self._lock = threading.Lock()
        self._target_id = ""
        self._state_name = STATE_IDLE
        self._newest_stamp_ns = 0  # newest image the target has seen (its init image or a tracked one)
        # The checkpoint's thresholds, which a negative setting in `configure` returns to.
        self._model_settings = {
            "bypass_threshold": float(tracker.model.bypass_threshold),
            "lost_score": float(tracker.cfg.lost_score),
            "found_score": float(tracker.cfg.found_score),
        }
        self._settings = dict(self._model_settings)  # in use; read without the lock (diagnostics)

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
            self._newest_stamp_ns = stamp_ns
            return self._target_id

    def reset(self) -> bool:
        """Drop the target; False when there was none."""
        with self._lock:
            if self._state_name == STATE_IDLE:
                return False
            self._drop_target()
            return True

    def track(self, frame: np.ndarray, stamp_ns: int) -> Step:
        """Track the image stamped ``stamp_ns`` (nothing while idle).

        An image older than the newest one the target has seen is not tracked: its box would come
        from a newer state (the worker may have taken it just before an init, or it arrived late).
        Older by more than CLOCK_JUMP_BACK_NS means the clock went back: the target is dropped,
        since its last box says nothing about the replayed scene, and the caller must re-init.
        Raises what Tracker.track raises (ValueError for a bad frame), leaving the target as it was.
        """
        with self._lock:
            if self._state_name == STATE_IDLE:
                return Step()
            if stamp_ns < self._newest_stamp_ns:
                back_s = (self._newest_stamp_ns - stamp_ns) / 1e9
                if self._newest_stamp_ns - stamp_ns > CLOCK_JUMP_BACK_NS:
                    self._drop_target()
                    return Step(skipped=f"image stamps jumped back by {back_s:.3f} s (bag loop or "
                                        "simulator reset): target dropped, call init_target again",
                                clock_jump=True)
                return Step(target_id=self._target_id,
                            skipped=f"image is {back_s:.3f} s older than the target's newest image: not tracked")
            result = self._tracker.track(frame)
            self._state_name = result.state
            self._newest_stamp_ns = stamp_ns
            return Step(result=result, target_id=self._target_id)

    def _drop_target(self) -> None:
        self._target_id = ""
        self._state_name = STATE_IDLE

    def configure(
        self,
        bypass_enabled: Optional[bool] = None,
        bypass_threshold: Optional[float] = None,
        lost_score: Optional[float] = None,
        found_score: Optional[float] = None,
    ) -> None:
        """Apply run-time settings between frames (None = leave as is; a negative threshold = the
        model's own, as its checkpoint gives it)."""
        with self._lock:
            model, cfg = self._tracker.model, self._tracker.cfg
            if bypass_enabled is not None:
                model.bdm_enabled = bool(bypass_enabled)
            if bypass_threshold is not None:
                model.bypass_threshold = self._threshold("bypass_threshold", bypass_threshold)
            if lost_score is not None:
                cfg.lost_score = self._threshold("lost_score", lost_score)
            if found_score is not None:
                cfg.found_score = self._threshold("found_score", found_score)
            # found_score as it acts: never below lost_score
            self._settings = {"bypass_threshold": float(model.bypass_threshold), "lost_score": float(cfg.lost_score),
                              "found_score": float(found_threshold(cfg))}

    def settings(self) -> dict[str, float]:
        """The thresholds in use, the model's own resolved. Lock-free (a dict replaced whole), so
        diagnostics never wait for a model step."""
        return self._settings

    def _threshold(self, name: str, value: float) -> float:
        return self._model_settings[name] if value < 0 else float(value)
