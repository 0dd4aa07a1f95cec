"""The other side of the tracker node: a camera that publishes frames and a client that talks to
the node (init_target, reset, detections, status). Used by `abtrack demo` and by the tests.

Both run on a background executor thread, so the caller's code stays plain and blocking.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Optional

import numpy as np
from builtin_interfaces.msg import Time as TimeMsg
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import Image
from std_srvs.srv import Trigger
from vision_msgs.msg import Detection2D

from abtrack_ros.msg import TrackerStatus
from abtrack_ros.ros.image_conversion import rgb_to_image_msg
from abtrack_ros.srv import InitTarget

RESULT_QOS_DEPTH = 1000


def ns_to_stamp(stamp_ns: int) -> TimeMsg:
    return TimeMsg(sec=stamp_ns // 1_000_000_000, nanosec=stamp_ns % 1_000_000_000)


@dataclass(frozen=True)
class Received:
    """A message and when this process received it (ROS clock, ns)."""

    msg: Any
    received_ns: int


class TrackerClient(Node):
    """Calls the tracker node's services and records everything it publishes."""

    def __init__(self, tracker_namespace: str = "", name: str = "abtrack_client") -> None:
        super().__init__(name)
        prefix = tracker_namespace.rstrip("/") + "/" if tracker_namespace else ""
        self._lock = threading.Lock()
        self.detections: list[Received] = []
        self.statuses: list[Received] = []
        qos = QoSProfile(depth=RESULT_QOS_DEPTH, reliability=ReliabilityPolicy.RELIABLE)
        self.create_subscription(Detection2D, prefix + "detection", self._store(self.detections), qos)
        self.create_subscription(TrackerStatus, prefix + "status", self._store(self.statuses), qos)
        self._init = self.create_client(InitTarget, prefix + "init_target")
        self._reset = self.create_client(Trigger, prefix + "reset")
        self.init_detection_pub = self.create_publisher(Detection2D, prefix + "init_detection", 10)

    def _store(self, into: list[Received]) -> Any:
        def callback(msg: Any) -> None:
            with self._lock:
                into.append(Received(msg, self.get_clock().now().nanoseconds))

        return callback

    def wait_for_services(self, timeout_s: float) -> bool:
        return self._init.wait_for_service(timeout_sec=timeout_s) and self._reset.wait_for_service(
            timeout_sec=timeout_s
        )

    def init_target(self, box_xywh: list[float], stamp_ns: int = 0, timeout_s: float = 10.0) -> Any:
        x, y, w, h = (float(v) for v in box_xywh)
        request = InitTarget.Request(stamp=ns_to_stamp(stamp_ns), x=x, y=y, width=w, height=h)
        return self._call(self._init, request, timeout_s)

    def reset(self, timeout_s: float = 10.0) -> Any:
        return self._call(self._reset, Trigger.Request(), timeout_s)

    def _call(self, client: Any, request: Any, timeout_s: float) -> Any:
        done = threading.Event()
        future = client.call_async(request)
        future.add_done_callback(lambda _f: done.set())
        if not done.wait(timeout_s):
            client.remove_pending_request(future)
            raise TimeoutError(f"no answer from {client.srv_name} within {timeout_s} s")
        return future.result()

    def snapshot(self) -> tuple[list[Received], list[Received]]:
        with self._lock:
            return list(self.detections), list(self.statuses)

    def clear(self) -> None:
        with self._lock:
            self.detections.clear()
            self.statuses.clear()

    def wait_for(self, predicate: Any, timeout_s: float, poll_s: float = 0.02) -> bool:
        """Wait until predicate(detections, statuses) is true."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if predicate(*self.snapshot()):
                return True
            time.sleep(poll_s)
        return predicate(*self.snapshot())


class ReplayCamera(Node):
    """Publishes RGB frames as sensor_msgs/Image with sensor-data QoS and fresh, unique stamps."""

    def __init__(self, topic: str = "image", frame_id: str = "camera", name: str = "abtrack_camera",
                 qos: QoSProfile = qos_profile_sensor_data) -> None:
        super().__init__(name)
        self.frame_id = frame_id
        self.publisher = self.create_publisher(Image, topic, qos)
        self._last_stamp_ns = 0
        self.published = 0  # messages sent so far

    def publish_frame(self, frame: np.ndarray, stamp_ns: Optional[int] = None) -> int:
        """Publish one frame; returns its header stamp in ns: ``stamp_ns`` when given (a recorded
        or deliberately odd stamp), else a fresh one, strictly increasing."""
        if stamp_ns is None:
            stamp_ns = max(self.get_clock().now().nanoseconds, self._last_stamp_ns + 1)
            self._last_stamp_ns = stamp_ns
        msg = rgb_to_image_msg(frame)
        msg.header.stamp = ns_to_stamp(stamp_ns)
        msg.header.frame_id = self.frame_id
        self.publisher.publish(msg)
        self.published += 1
        return stamp_ns

    def start_replay(self, items: Iterator[tuple[np.ndarray, Any]], period_s: float,
                     on_published: Callable[[int, Any], None]) -> threading.Event:
        """Publish one frame per tick of a timer on this node's executor, like a driver's capture
        loop (a sleeping caller thread can wake up far too late on a loaded machine: measured up
        to 2 s for a 33 ms sleep). ``items`` yields (frame, tag); ``on_published(stamp_ns, tag)``
        runs after each; the returned event is set after the last frame."""
        done = threading.Event()

        def tick() -> None:
            item = next(items, None)
            if item is None:
                timer.cancel()
                done.set()
                return
            frame, tag = item
            on_published(self.publish_frame(frame), tag)

        timer = self.create_timer(period_s, tick)
        return done

    def wait_for_subscriber(self, timeout_s: float) -> bool:
        return wait_for_subscriber(self.publisher, timeout_s)


def wait_for_subscriber(publisher: Any, timeout_s: float, poll_s: float = 0.05) -> bool:
    """Whether ``publisher`` has a matched subscription within ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while publisher.get_subscription_count() == 0:
        if time.monotonic() > deadline:
            return False
        time.sleep(poll_s)
    return True


class BackgroundSpinner:
    """Spins some nodes on a SingleThreadedExecutor in a daemon thread; close() stops it.
    (rclpy's MultiThreadedExecutor polls without blocking while a callback is in flight: one
    core busy in Python, measured to starve the processes beside it on a 2-core machine.)"""

    def __init__(self, *nodes: Node) -> None:
        self._executor = SingleThreadedExecutor()
        self._nodes = nodes
        for node in nodes:
            self._executor.add_node(node)
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        try:
            self._executor.spin()
        except ExternalShutdownException:
            pass

    def close(self) -> None:
        self._executor.shutdown()
        self._thread.join(timeout=5.0)
        for node in self._nodes:
            node.destroy_node()
