"""Replays a bag's image messages over DDS as recorded (header stamps included) at the recorded
pace, with the recording's time on /clock like `ros2 bag play --clock`; `abtrack demo --bag`."""
from __future__ import annotations

import threading
import time
from typing import Any, Callable, Iterator, Optional

from rclpy.node import Node
from rclpy.qos import QoSProfile, qos_profile_sensor_data
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CompressedImage, Image

from abtrack_ros.ros.bags import BagImage, ImageTopic
from abtrack_ros.ros.client import ns_to_stamp, wait_for_subscriber

CLOCK_TOPIC = "/clock"
CLOCK_RATE_HZ = 40.0  # the rate of `ros2 bag play --clock`
SUBSCRIBER_POLL_S = 0.05


class ReplayClock:
    """The recording's time during a replay at ``scale`` times the recorded pace (all in ns).

    It runs from an anchor (a recording time and the wall time it was reached) up to the next
    frame not published yet, never further, and never backwards: a late frame holds the clock
    rather than letting it jump back when the frame finally goes out.
    """

    def __init__(self, start_ns: int) -> None:
        self.scale = 1.0
        self._anchor_ns = start_ns
        self._anchor_wall_ns: Optional[int] = None  # None: held at the anchor
        self._limit_ns: Optional[int] = start_ns  # the next frame to go out; None: no more frames
        self._last_ns = start_ns

    def hold(self, recording_ns: int) -> None:
        """Stop at a frame that was just published on its own (the demo's init frame)."""
        self._anchor_ns, self._anchor_wall_ns, self._limit_ns = recording_ns, None, recording_ns

    def run(self, wall_ns: int, scale: float) -> None:
        """Start running from where the clock stands."""
        self.scale = scale
        self._anchor_ns, self._anchor_wall_ns = self.now_ns(wall_ns), wall_ns

    def due_wall_ns(self, recording_ns: int) -> int:
        return self._anchor_wall_ns + round((recording_ns - self._anchor_ns) / self.scale)

    def next_frame(self, recording_ns: int, wall_ns: int) -> int:
        """The frame the clock stands at is out; the next one is recorded at ``recording_ns``.
        Returns the ns until that one is due. When it is due already (the frame out was late),
        the schedule starts anew from the frame out, so the replay shifts instead of bursting."""
        if self.due_wall_ns(recording_ns) <= wall_ns:
            self._anchor_ns, self._anchor_wall_ns = self._limit_ns, wall_ns
        self._limit_ns = recording_ns
        return max(self.due_wall_ns(recording_ns) - wall_ns, 0)

    def finish(self) -> None:
        """No frames left: the time runs on (while the node finishes the last ones)."""
        self._limit_ns = None

    def now_ns(self, wall_ns: int) -> int:
        now = self._anchor_ns
        if self._anchor_wall_ns is not None:
            now += round((wall_ns - self._anchor_wall_ns) * self.scale)
        if self._limit_ns is not None:
            now = min(now, self._limit_ns)
        self._last_ns = max(self._last_ns, now)
        return self._last_ns


class BagCamera(Node):
    """Publishes a bag topic's messages on ``topic`` (``topic``/compressed for CompressedImage)
    with sensor-data QoS, and the recording's time on /clock."""

    def __init__(self, topic: str, recording: ImageTopic, name: str = "abtrack_bag_player") -> None:
        super().__init__(name)
        message_type, topic = (CompressedImage, f"{topic}/compressed") if recording.compressed else (Image, topic)
        self.publisher = self.create_publisher(message_type, topic, qos_profile_sensor_data)
        self._clock_publisher = self.create_publisher(Clock, CLOCK_TOPIC, QoSProfile(depth=1))
        self._recording = recording
        self._lock = threading.Lock()  # the clock is moved by the caller and by the executor
        self._replay_clock = ReplayClock(recording.start_ns)
        self.published = 0  # messages sent so far
        self.create_timer(1.0 / CLOCK_RATE_HZ, self._publish_clock)

    def _publish_clock(self) -> None:
        with self._lock:
            now = self._replay_clock.now_ns(time.monotonic_ns())
        self._clock_publisher.publish(Clock(clock=ns_to_stamp(now)))

    def _send(self, image: BagImage) -> int:
        self._publish_clock()  # the node's clock reaches the frame's recording time first
        self.publisher.publish(image.message)
        self.published += 1
        return image.stamp_ns

    def publish_frame(self, image: BagImage) -> int:
        """Publish one recorded message with the clock held at its time; returns its stamp."""
        with self._lock:
            self._replay_clock.hold(image.log_ns)
        return self._send(image)

    def start_replay(self, items: Iterator[tuple[BagImage, Any]], period_s: float,
                     on_published: Callable[[int, Any], None]) -> threading.Event:
        """Publish the items from a timer on this node's executor, continuing from the last frame
        published, at their recorded gaps scaled so that the recording's mean period becomes
        ``period_s`` (ReplayClock: late frames shift the replay, never burst it; a burst would
        only replace frames in the node's one-slot queue). ``on_published(stamp_ns, tag)`` runs
        after each frame; the returned event is set after the last one."""
        done = threading.Event()
        pending = next(items, None)

        def schedule() -> None:
            if pending is None:
                with self._lock:
                    self._replay_clock.finish()
                done.set()
                return
            with self._lock:
                delay_ns = self._replay_clock.next_frame(pending[0].log_ns, time.monotonic_ns())
            timer.timer_period_ns = delay_ns
            timer.reset()

        def tick() -> None:
            nonlocal pending
            timer.cancel()
            image, tag = pending
            on_published(self._send(image), tag)
            pending = next(items, None)
            schedule()

        timer = self.create_timer(period_s, tick, autostart=False)  # schedule() sets each period
        with self._lock:
            self._replay_clock.run(time.monotonic_ns(), 1.0 / (period_s * self._recording.rate_hz))
        schedule()
        return done

    def wait_for_subscriber(self, timeout_s: float) -> bool:
        return wait_for_subscriber(self.publisher, timeout_s, SUBSCRIBER_POLL_S)
