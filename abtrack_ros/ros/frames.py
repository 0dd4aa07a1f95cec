"""The hand-over of camera frames from the subscription callback to the tracking worker.

The callback only stores: the newest message goes into a one-slot mailbox (replacing, and
counting as dropped, one the worker has not taken yet) and into a short ring buffer that lets a
box drawn on a slightly older image initialise the tracker on that very image. The worker always
takes the newest frame, so latency stays flat when the camera is faster than the model.
"""
from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from typing import Any, Optional


@dataclass(frozen=True)
class FrameRecord:
    """One received image message and when it arrived (monotonic ns)."""

    msg: Any
    stamp_ns: int
    received_ns: int


def stamp_to_ns(stamp: Any) -> int:
    """builtin_interfaces/Time -> integer nanoseconds."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


class FrameStore:
    """Newest-frame mailbox plus a ring buffer of recent frames; thread safe."""

    def __init__(self, buffer_length: int) -> None:
        if buffer_length < 1:
            raise ValueError(f"buffer_length must be >= 1, got {buffer_length}")
        self._cond = threading.Condition()
        self._pending: Optional[FrameRecord] = None
        self._recent: deque[FrameRecord] = deque(maxlen=buffer_length)
        self.received = 0
        self.dropped = 0

    def put(self, record: FrameRecord) -> None:
        with self._cond:
            if self._pending is not None:
                self.dropped += 1
            self._pending = record
            self._recent.append(record)
            self.received += 1
            self._cond.notify()

    def take(self, timeout_s: float) -> Optional[FrameRecord]:
        """The newest frame not yet taken (waiting up to timeout_s), or None."""
        with self._cond:
            if self._pending is None:
                self._cond.wait(timeout_s)
            record, self._pending = self._pending, None
            return record

    def find(self, stamp_ns: int) -> Optional[FrameRecord]:
        """The buffered frame with exactly this stamp; stamp 0 = the newest received one."""
        with self._cond:
            if not self._recent:
                return None
            if stamp_ns == 0:
                return self._recent[-1]
            for record in reversed(self._recent):
                if record.stamp_ns == stamp_ns:
                    return record
            return None

    def buffered_stamps(self) -> list[int]:
        with self._cond:
            return [r.stamp_ns for r in self._recent]

    def wake(self) -> None:
        """Release a worker blocked in take() (used at shutdown)."""
        with self._cond:
            self._cond.notify_all()
