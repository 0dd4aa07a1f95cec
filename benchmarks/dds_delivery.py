"""How many camera frames a best-effort subscriber receives over Fast DDS, with and without the
package's large-image profile on each side (docs/ros.md, "Large images over DDS").

    python benchmarks/dds_delivery.py [--width 640 --height 480 --frames 150 --rate 30]

Each case runs a plain rclpy subscriber and a plain publisher (sensor-data QoS) in two processes,
so nothing of the tracker is involved. Prints one JSON object: frames received per case.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from typing import Optional

SETTLE_S = 2.0
# (camera side uses the profile, subscriber side uses the profile)
CASES = ((False, False), (True, True), (True, False), (False, True))


def publish(width: int, height: int, frames: int, rate: float) -> None:
    import rclpy
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image

    rclpy.init()
    node = rclpy.create_node("delivery_pub")
    pub = node.create_publisher(Image, "/delivery", qos_profile_sensor_data)
    deadline = time.monotonic() + 10
    while pub.get_subscription_count() == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.0)
    msg = Image(height=height, width=width, encoding="bgr8", step=width * 3, data=bytes(width * height * 3))
    for _ in range(frames):
        pub.publish(msg)
        time.sleep(1.0 / rate)
    time.sleep(1.0)
    rclpy.shutdown()


def subscribe(frames: int, rate: float) -> None:
    import rclpy
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image

    rclpy.init()
    node = rclpy.create_node("delivery_sub")
    received = []
    node.create_subscription(Image, "/delivery", received.append, qos_profile_sensor_data)
    end = time.monotonic() + frames / rate + 6.0
    while time.monotonic() < end:
        rclpy.spin_once(node, timeout_sec=0.1)
    print(len(received), flush=True)
    rclpy.shutdown()


def run_case(args: argparse.Namespace, camera_profile: bool, subscriber_profile: bool) -> int:
    from abtrack_ros.ros.dds import FASTDDS_PROFILE, PROFILE_VARIABLES

    def env(with_profile: bool) -> dict:
        e = {k: v for k, v in os.environ.items() if k not in PROFILE_VARIABLES}
        if with_profile:
            e[PROFILE_VARIABLES[0]] = str(FASTDDS_PROFILE)
        return e

    common = ["--width", str(args.width), "--height", str(args.height), "--frames", str(args.frames),
              "--rate", str(args.rate)]
    sub = subprocess.Popen([sys.executable, __file__, "--role", "sub", *common], env=env(subscriber_profile),
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    time.sleep(SETTLE_S)
    subprocess.run([sys.executable, __file__, "--role", "pub", *common], env=env(camera_profile),
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    out, _ = sub.communicate(timeout=60)
    return int(out.strip().splitlines()[-1])


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--frames", type=int, default=150)
    parser.add_argument("--rate", type=float, default=30.0)
    parser.add_argument("--role", choices=("pub", "sub"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.role == "pub":
        publish(args.width, args.height, args.frames, args.rate)
        return 0
    if args.role == "sub":
        subscribe(args.frames, args.rate)
        return 0
    os.environ.setdefault("ROS_DOMAIN_ID", str(random.randint(1, 100)))
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    cases = [{"camera_profile": cam, "subscriber_profile": sub, "received": run_case(args, cam, sub)}
             for cam, sub in CASES]
    print(json.dumps({"width": args.width, "height": args.height, "frames": args.frames, "rate_hz": args.rate,
                      "cases": cases}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
