"""The tracker node under a real camera load: a camera process publishing at a fixed rate and size,
the node in its own process with the shipped settings, and this process as the client.

    python benchmarks/node_camera.py [--duration 60] [--runs 3] [--width 640] [--height 480]
        [--rate 30] [--interval 60] [--node-param threads:=2 ...] [--no-dds-profile]

For each run it starts the node (default model, config/tracker.yaml defaults plus --node-param),
starts benchmarks' camera (abtrack_ros.ros.synthetic_camera), initialises on the moving square,
and records every status the node publishes. Prints one JSON object: per run and per --interval
seconds, frames published by the camera, frames that reached the node, frames processed (a status
came back), the image-to-status latency percentiles (status received here minus the image stamp:
both on this machine's clock) and the node's resident memory. docs/ros.md has its numbers.
A 10-minute soak: --duration 600 --runs 1.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np

NS = "/bench_cam"
START_TIMEOUT_S = 120.0
CAMERA_WARMUP_S = 2.0
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")


def resident_mb(pid: int) -> Optional[float]:
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_BYTES / 2**20
    except (OSError, ValueError, IndexError):
        return None


class StatusLog:
    """Every status: (receive time ns, image stamp ns, frame index from frame_id, state, counters)."""

    def __init__(self) -> None:
        self.rows: list[tuple[int, int, int, str, int, int]] = []
        self.lock = threading.Lock()

    def add(self, now_ns: int, msg: Any) -> None:
        stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        with self.lock:
            self.rows.append((now_ns, stamp, int(msg.header.frame_id or -1), msg.state_name,
                              int(msg.frames_dropped), int(msg.frames_lost_in_transport)))

    def snapshot(self) -> list:
        with self.lock:
            return list(self.rows)


def window_stats(rows: list, published: int) -> dict:
    """Figures for the statuses of frames published in one window (``published`` of them: the
    camera's rate times the window, so a share can read slightly above 1 when its timer runs
    fast)."""
    tracked = [r for r in rows if r[3] in ("TRACKING", "LOST")]
    latency = np.array([(r[0] - r[1]) / 1e6 for r in tracked]) if tracked else np.array([np.nan])
    return {
        "published": published,
        "processed": len(rows),
        "processed_share": round(len(rows) / published, 4) if published else None,
        "tracked": len(tracked),
        "latency_ms": {f"p{q}": round(float(np.percentile(latency, q)), 1) for q in (50, 95, 99)},
    }


def one_run(args: argparse.Namespace, run_index: int) -> dict:
    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy

    from abtrack_ros.msg import TrackerStatus
    from abtrack_ros.ros.client import BackgroundSpinner, TrackerClient
    from abtrack_ros.ros.synthetic_camera import square_box

    env = dict(os.environ)
    node_args = [sys.executable, "-m", "abtrack_ros.ros.node", "--ros-args", "-r", f"__ns:={NS}"]
    for param in args.node_param:
        node_args += ["-p", param]
    node = subprocess.Popen(node_args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    camera_env = dict(env)
    if args.no_dds_profile:
        camera_env.pop("FASTDDS_DEFAULT_PROFILES_FILE", None)
    client = TrackerClient(NS, name=f"bench_client_{run_index}")
    log = StatusLog()
    client.create_subscription(TrackerStatus, f"{NS}/status", lambda m: log.add(time.time_ns(), m),
                               QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE))
    spinner = BackgroundSpinner(client)
    camera = None
    try:
        if not client.wait_for_services(START_TIMEOUT_S):
            raise RuntimeError("the node did not start")
        camera_cmd = [sys.executable, "-m", "abtrack_ros.ros.synthetic_camera", "--topic", f"{NS}/image",
                      "--width", str(args.width), "--height", str(args.height), "--rate", str(args.rate)]
        if args.no_dds_profile:
            camera_cmd.append("--no-dds-profile")
        camera = subprocess.Popen(camera_cmd, env=camera_env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                  text=True)
        start_ns = time.time_ns()
        time.sleep(CAMERA_WARMUP_S)
        rows = log.snapshot()
        if not rows:
            raise RuntimeError("no status from the node after the camera started (frames lost in DDS?)")
        _, stamp, k, *_ = rows[-1]
        response = client.init_target(square_box(k, args.width, args.height), stamp)
        if not response.success:
            raise RuntimeError(f"init failed: {response.message}")
        init_ns = time.time_ns()
        memory = []
        while time.time_ns() - init_ns < args.duration * 1e9:
            time.sleep(1.0)
            memory.append(((time.time_ns() - init_ns) / 1e9, resident_mb(node.pid)))
    finally:
        if camera is not None:
            camera.send_signal(subprocess.signal.SIGINT)
            camera_out, _ = camera.communicate(timeout=20)
        spinner.close()
        node.send_signal(subprocess.signal.SIGINT)
        node_rc = node.wait(30)
    # Frames are numbered by the camera at `rate` from start_ns: window w holds the frames it
    # published in [init + w*interval, init + (w+1)*interval).
    end_ns = init_ns + args.duration * 1e9
    rows = [r for r in log.snapshot() if init_ns <= r[1] < end_ns]
    windows = []
    for w in range(int(np.ceil(args.duration / args.interval))):
        lo = init_ns + w * args.interval * 1e9
        hi = min(lo + args.interval * 1e9, init_ns + args.duration * 1e9)
        in_window = [r for r in rows if lo <= r[1] < hi]
        published = int(round((hi - lo) / 1e9 * args.rate))
        mem = [m for t, m in memory if lo <= init_ns + t * 1e9 < hi and m is not None]
        stats = window_stats(in_window, published)
        stats["resident_mb"] = round(float(np.median(mem)), 1) if mem else None
        windows.append(stats)
    last = rows[-1] if rows else (0, 0, 0, "", 0, 0)
    published_total = sum(w["published"] for w in windows)
    return {
        "windows": windows,
        "total": window_stats(rows, published_total),
        "frames_dropped_by_node": last[4],
        "frames_lost_in_transport": last[5],
        "camera": camera_out.strip() if camera is not None else "",
        "node_exit_code": node_rc,
    }


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of tracking per run")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--interval", type=float, default=60.0, help="seconds per reported window")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--rate", type=float, default=30.0)
    parser.add_argument("--node-param", action="append", default=[], metavar="NAME:=VALUE")
    parser.add_argument("--no-dds-profile", action="store_true", help="camera without the large-image profile")
    args = parser.parse_args(argv)
    os.environ.setdefault("ROS_DOMAIN_ID", str(random.randint(1, 100)))
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    from abtrack_ros.ros.dds import use_large_image_profile

    use_large_image_profile()
    import rclpy

    rclpy.init()
    try:
        runs = [one_run(args, i) for i in range(args.runs)]
    finally:
        rclpy.try_shutdown()
    print(json.dumps({"settings": {k: v for k, v in vars(args).items()}, "cpus": os.cpu_count(), "runs": runs},
                     indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
