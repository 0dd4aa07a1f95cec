"""The hand-over of camera frames from the subscription callback to the tracking worker.

The callback only stores: the newest message goes into a one-slot mailbox (replacing, and
counting as dropped, one the worker has not taken yet) and into a short ring buffer that lets a
box drawn on a slightly older image initialise the tracker on that very image. The worker always
takes the newest frame, so latency stays flat when the camera is faster than the model.
The ring buffer is bounded in frames and in bytes: 30 frames of 4000x3000 would hold 1 GiB.

Frames lost before the callback (DDS dropped them) are counted from gaps in each publisher's
sequence numbers, or, where the middleware gives none, from stamp gaps at a known camera rate.
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

    @property
    def nbytes(self) -> int:
        """Bytes of image data the record holds."""
        return len(self.msg.data)


def stamp_to_ns(stamp: Any) -> int:
    """builtin_interfaces/Time -> integer nanoseconds."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


class FrameStore:
    """Newest-frame mailbox plus a ring buffer of recent frames; thread safe."""

    def __init__(self, buffer_length: int, max_bytes: Optional[int] = None) -> None:
        if buffer_length < 1:
            raise ValueError(f"buffer_length must be >= 1, got {buffer_length}")
        if max_bytes is not None and max_bytes < 1:
            raise ValueError(f"max_bytes must be >= 1, got {max_bytes}")
        self._cond = threading.Condition()
        self._pending: Optional[FrameRecord] = None
        self._recent: deque[FrameRecord] = deque()
        self._buffer_length = buffer_length
        self._max_bytes = max_bytes
        self.buffered_bytes = 0
        self.received = 0
        self.dropped = 0

    def put(self, record: FrameRecord) -> None:
        with self._cond:
            if self._pending is not None:
                self.dropped += 1
            self._pending = record
            self._recent.append(record)
            self.buffered_bytes += record.nbytes
            while len(self._recent) > 1 and (
                len(self._recent) > self._buffer_length
                or (self._max_bytes is not None and self.buffered_bytes > self._max_bytes)
            ):
                self.buffered_bytes -= self._recent.popleft().nbytes
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


class TransportLossCounter:
    """Counts frames that never reached the subscription callback.

    Each publisher numbers its samples (DDS publication sequence numbers): a jump of k + 1 means
    k samples lost on the way. A publisher that restarts comes back with a new id, and a number
    that goes backwards starts over. Without sequence numbers, a stamp gap of more than 1.5
    periods at ``expected_rate_hz`` counts the missing periods; with no rate nothing is counted.
    """

    GAP_PERIODS = 1.5  # a stamp gap this many periods long means at least one frame is missing

    def __init__(self, expected_rate_hz: float = 0.0) -> None:
        self._period_ns = 1e9 / expected_rate_hz if expected_rate_hz > 0 else None
        self._last_sequence: dict[bytes, int] = {}
        self._last_stamp_ns: Optional[int] = None
        self._lock = threading.Lock()
        self.lost = 0

    def observe(self, publisher: Optional[bytes], sequence: Optional[int], stamp_ns: int) -> int:
        """Record one received sample; returns how many were lost just before it."""
        with self._lock:
            if publisher is not None and sequence is not None:
                gap = sequence_gap(self._last_sequence.get(publisher), sequence)
                self._last_sequence[publisher] = sequence
            else:
                gap = stamp_gap(self._last_stamp_ns, stamp_ns, self._period_ns, self.GAP_PERIODS)
                self._last_stamp_ns = stamp_ns
            self.lost += gap
            return gap


def sequence_gap(previous: Optional[int], current: int) -> int:
    """Samples missing between two sequence numbers of one publisher (0 on a restart)."""
    if previous is None or current <= previous:
        return 0
    return current - previous - 1


def stamp_gap(previous_ns: Optional[int], current_ns: int, period_ns: Optional[float], gap_periods: float) -> int:
    """Frames missing between two stamps at a known period (0 when the period is unknown)."""
    if previous_ns is None or period_ns is None or current_ns <= previous_ns:
        return 0
    elapsed = (current_ns - previous_ns) / period_ns
    return int(round(elapsed)) - 1 if elapsed > gap_periods else 0
