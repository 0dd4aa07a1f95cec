"""abtrack_ros.tracking: pure geometry and the Tracker."""
from abtrack_ros.tracking.tracker import (
    STATE_LOST,
    STATE_TRACKING,
    Tracker,
    TrackerNotInitializedError,
    TrackResult,
)

__all__ = ["STATE_LOST", "STATE_TRACKING", "Tracker", "TrackerNotInitializedError", "TrackResult"]
