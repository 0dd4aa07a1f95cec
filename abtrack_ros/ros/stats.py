"""Running statistics of the node (rates, latency percentiles) and the diagnostics verdict."""
from __future__ import annotations

import os
import threading
from collections import deque
from dataclasses import dataclass
from typing import Optional

import numpy as np

# Sliding windows: rates over the last RATE_WINDOW_S seconds, percentiles over the last
# LATENCY_WINDOW results, so diagnostics describe the recent past, not the whole run.
# Two seconds: a stopped camera reads 0 Hz within two diagnostics periods.
RATE_WINDOW_S = 2.0
LATENCY_WINDOW = 300
PERCENTILES = (50, 90, 99)
# Diagnostics thresholds.
STALE_INPUT_S = 2.0
HIGH_DROP_RATIO = 0.5
# Share of the camera's frames lost before the node (in DDS) that raises a WARN.
HIGH_TRANSPORT_LOSS_RATIO = 0.05

# diagnostic_msgs/DiagnosticStatus levels (kept here so the verdict stays a pure function).
LEVEL_OK = 0
LEVEL_WARN = 1
LEVEL_ERROR = 2


class RateMeter:
    """Events per second over a sliding time window (timestamps in seconds, monotonic)."""

    def __init__(self, window_s: float = RATE_WINDOW_S) -> None:
        self._window_s = window_s
        self._times: deque[float] = deque()
        self._first: Optional[float] = None
        self._last: Optional[float] = None
        self._lock = threading.Lock()

    def tick(self, now_s: float) -> None:
        with self._lock:
            self._times.append(now_s)
            self._first = now_s if self._first is None else self._first
            self._last = now_s
            self._trim(now_s)

    def rate(self, now_s: float) -> float:
        """Events in the window over its length (over the time since the first event, when shorter)."""
        with self._lock:
            self._trim(now_s)
            if self._first is None:
                return 0.0
            span = min(self._window_s, now_s - self._first)
            return len(self._times) / span if span > 0 else 0.0

    def last(self) -> Optional[float]:
        """Time of the newest event ever, None before the first."""
        with self._lock:
            return self._last

    def _trim(self, now_s: float) -> None:
        while self._times and now_s - self._times[0] > self._window_s:
            self._times.popleft()


def resident_memory_bytes() -> Optional[int]:
    """This process's resident set size (Linux /proc), None where it cannot be read."""
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def percentiles(values: list[float], qs: tuple[int, ...] = PERCENTILES) -> dict[str, float]:
    """{"p50": ..., "p90": ..., "p99": ...}; NaN for an empty list."""
    if not values:
        return {f"p{q}": float("nan") for q in qs}
    arr = np.asarray(values, dtype=np.float64)
    return {f"p{q}": float(np.percentile(arr, q)) for q in qs}


class ResultWindow:
    """The last LATENCY_WINDOW processed frames: total latency and executed-block fraction."""

    def __init__(self, size: int = LATENCY_WINDOW) -> None:
        self._total_ms: deque[float] = deque(maxlen=size)
        self._bypass: deque[float] = deque(maxlen=size)
        self._lock = threading.Lock()

    def add(self, total_ms: float, bypass_fraction: Optional[float]) -> None:
        with self._lock:
            self._total_ms.append(total_ms)
            if bypass_fraction is not None:
                self._bypass.append(bypass_fraction)

    def latency_percentiles(self) -> dict[str, float]:
        with self._lock:
            return percentiles(list(self._total_ms))

    def mean_bypass(self) -> float:
        with self._lock:
            return float(np.mean(self._bypass)) if self._bypass else 0.0


@dataclass(frozen=True)
class HealthInputs:
    """What the diagnostics verdict looks at; counts are since the previous diagnostics tick."""

    seconds_since_image: Optional[float]  # None: no image ever received
    received: int
    dropped: int
    converted: int  # frames the worker tried to convert
    rejected: int  # of those, rejected as unusable
    state_name: str
    lost_in_transport: int = 0  # frames that never reached the node (sequence or stamp gaps)
    worker_errors: int = 0  # unexpected exceptions in the tracking worker
    clock_jumps: int = 0  # image stamps that went back (bag loop, simulator reset)


def health_verdict(h: HealthInputs) -> tuple[int, str]:
    """(level, message) for the node's DiagnosticStatus: ERROR beats WARN beats OK."""
    if h.worker_errors > 0:
        return LEVEL_ERROR, f"{h.worker_errors} internal errors in the tracking worker (see last_error)"
    if h.converted > 0 and h.rejected == h.converted:
        return LEVEL_ERROR, f"all {h.rejected} recent images rejected (see last_error)"
    warnings = []
    if h.seconds_since_image is None:
        warnings.append("no image received yet")
    elif h.seconds_since_image > STALE_INPUT_S:
        warnings.append(f"no image for {h.seconds_since_image:.1f} s")
    if h.received > 0 and h.dropped / h.received > HIGH_DROP_RATIO:
        warnings.append(f"falling behind: {h.dropped} of {h.received} recent frames dropped")
    sent = h.received + h.lost_in_transport
    if sent > 0 and h.lost_in_transport / sent > HIGH_TRANSPORT_LOSS_RATIO:
        warnings.append(f"{h.lost_in_transport} of {sent} recent camera frames lost before the node "
                        "(DDS transport: see docs/ros.md, large images)")
    if h.clock_jumps > 0:
        warnings.append("image stamps jumped back: target dropped")
    if h.state_name == "LOST":
        warnings.append("target lost")
    if warnings:
        return LEVEL_WARN, "; ".join(warnings)
    return LEVEL_OK, f"ok ({h.state_name.lower()})"
