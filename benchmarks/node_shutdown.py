"""Clean shutdown, counted: start the node (shipped settings, default model), stream 640x480 frames
from a camera process, initialise, then stop it with SIGINT or SIGTERM (alternating) while it
tracks. A try is clean when the node exits with code 0 within the limit and prints no traceback.

    python benchmarks/node_shutdown.py [--tries 20]

Prints one JSON object; docs/ros.md has its numbers.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import time
from typing import Optional

NS = "/bench_stop"
WIDTH, HEIGHT = 640, 480  # the camera's frames; the init box is computed for them
EXIT_LIMIT_S = 10.0
START_TIMEOUT_S = 120.0


def one_try(index: int, sig: signal.Signals) -> dict:
    from abtrack_ros.ros.client import BackgroundSpinner, TrackerClient
    from abtrack_ros.ros.frames import stamp_to_ns
    from abtrack_ros.ros.synthetic_camera import square_box

    node = subprocess.Popen([sys.executable, "-m", "abtrack_ros.ros.node", "--ros-args", "-r", f"__ns:={NS}"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    camera = subprocess.Popen([sys.executable, "-m", "abtrack_ros.ros.synthetic_camera", "--topic", f"{NS}/image",
                               "--width", str(WIDTH), "--height", str(HEIGHT)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = TrackerClient(NS, name=f"stop_client_{index}")
    spinner = BackgroundSpinner(client)
    try:
        if not client.wait_for_services(START_TIMEOUT_S):
            raise RuntimeError("the node did not start")
        if not client.wait_for(lambda d, s: len(s) > 0, 10.0):
            raise RuntimeError("no status from the node after the camera started")
        # Initialise on the square where the camera drew it in the newest answered frame
        # (the camera numbers its frames in frame_id), so the node is TRACKING when signalled.
        newest = client.snapshot()[1][-1].msg
        client.init_target(square_box(int(newest.header.frame_id), WIDTH, HEIGHT), stamp_to_ns(newest.header.stamp))
        client.wait_for(lambda d, s: len(d) > 5, 10.0)
        detections = len(client.snapshot()[0])
        sent = time.monotonic()
        node.send_signal(sig)
        try:
            out, err = node.communicate(timeout=EXIT_LIMIT_S)
            exit_s, code = time.monotonic() - sent, node.returncode
        except subprocess.TimeoutExpired:
            node.kill()
            out, err = node.communicate()
            exit_s, code = None, None
    finally:
        camera.send_signal(signal.SIGINT)
        camera.wait(10)
        spinner.close()
    traceback = "Traceback" in out + err
    return {"signal": sig.name, "exit_code": code, "exit_s": None if exit_s is None else round(exit_s, 2),
            "traceback": traceback, "detections_before": detections,
            "clean": code == 0 and not traceback}


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tries", type=int, default=20)
    args = parser.parse_args(argv)
    os.environ.setdefault("ROS_DOMAIN_ID", str(random.randint(1, 100)))
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    from abtrack_ros.ros.dds import use_large_image_profile

    use_large_image_profile()
    import rclpy

    rclpy.init()
    try:
        tries = [one_try(i, (signal.SIGINT, signal.SIGTERM)[i % 2]) for i in range(args.tries)]
    finally:
        rclpy.try_shutdown()
    clean = sum(t["clean"] for t in tries)
    times = sorted(t["exit_s"] for t in tries if t["exit_s"] is not None)
    print(json.dumps({"tries": len(tries), "clean": clean,
                      "exit_s_max": times[-1] if times else None, "runs": tries}, indent=1))
    return 0 if clean == len(tries) else 1


if __name__ == "__main__":
    sys.exit(main())
