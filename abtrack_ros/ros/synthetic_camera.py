"""A stand-alone camera process for soak tests and benchmarks: publishes a bright square moving
over a textured background at a fixed rate and size (`python -m abtrack_ros.ros.synthetic_camera`).

It runs in its own process, as a real camera driver does, and applies the package's large-image
DDS profile unless told not to (`--no-dds-profile` shows what a default Fast DDS camera loses).
Frame k carries header.frame_id "k", so a listener can tell which frames it got.
"""
from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from typing import Optional

import numpy as np

SQUARE_SIDE_FRACTION = 0.1  # the target's side as a fraction of the frame height
ORBIT_PERIOD_FRAMES = 300  # frames for the square to go once around its path


def square_box(k: int, width: int, height: int) -> list[float]:
    """Where the square is in frame k: [x, y, w, h] on an ellipse around the frame centre."""
    side = max(8.0, height * SQUARE_SIDE_FRACTION)
    angle = 2 * np.pi * k / ORBIT_PERIOD_FRAMES
    cx = width / 2 + 0.3 * width * np.cos(angle)
    cy = height / 2 + 0.3 * height * np.sin(angle)
    return [cx - side / 2, cy - side / 2, side, side]


class FramePainter:
    """Frames of one size: a fixed random background with the square drawn in."""

    def __init__(self, width: int, height: int, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.width, self.height = width, height
        self.background = rng.integers(0, 120, size=(height, width, 3), dtype=np.uint8)

    def frame(self, k: int) -> np.ndarray:
        x, y, w, h = (int(round(v)) for v in square_box(k, self.width, self.height))
        frame = self.background.copy()
        frame[max(y, 0):y + h, max(x, 0):x + w] = (250, 200, 30)
        return frame


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--topic", default="/camera/image_raw")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--rate", type=float, default=30.0, help="frames per second")
    parser.add_argument("--frames", type=int, default=0, help="stop after this many frames (0: until a signal)")
    parser.add_argument("--reliable", action="store_true", help="reliable QoS (default: sensor data, best effort)")
    parser.add_argument("--no-dds-profile", action="store_true",
                        help="leave Fast DDS at its defaults (large frames then get lost)")
    return parser.parse_args(argv)


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    if not args.no_dds_profile:
        from abtrack_ros.ros.dds import use_large_image_profile

        use_large_image_profile()
    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
    from rclpy.signals import SignalHandlerOptions
    from sensor_msgs.msg import Image

    from abtrack_ros.ros.client import ns_to_stamp
    from abtrack_ros.ros.image_conversion import rgb_to_image_msg

    rclpy.init(signal_handler_options=SignalHandlerOptions.NO)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    node = rclpy.create_node("synthetic_camera")
    qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE) if args.reliable else qos_profile_sensor_data
    publisher = node.create_publisher(Image, args.topic, qos)
    painter = FramePainter(args.width, args.height)
    frames = [painter.frame(k) for k in range(ORBIT_PERIOD_FRAMES)]  # painted once: the loop only publishes
    period_s, k = 1.0 / args.rate, 0
    next_time = time.monotonic()
    while not stop.is_set() and (args.frames == 0 or k < args.frames):
        msg = rgb_to_image_msg(frames[k % ORBIT_PERIOD_FRAMES])
        msg.header.stamp = ns_to_stamp(node.get_clock().now().nanoseconds)
        msg.header.frame_id = str(k)
        publisher.publish(msg)
        k += 1
        # A fixed schedule: a late frame does not shift the ones after it (a driver's clock).
        next_time += period_s
        stop.wait(max(0.0, next_time - time.monotonic()))
    print(f"published {k} frames", flush=True)
    node.destroy_node()
    rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
