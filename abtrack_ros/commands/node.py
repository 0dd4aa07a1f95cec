"""`abtrack node --ros-args ...`: the ROS 2 tracker node (same as `ros2 run abtrack_ros tracker_node`)."""
from __future__ import annotations

import argparse

HELP = "Run the ROS 2 tracker node; everything after --ros-args goes to ROS (e.g. -p device:=cpu)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = (
        "Example: abtrack node --ros-args -r __ns:=/front -r image:=/front/image_raw "
        "-p checkpoint:=model.pt -p device:=cpu --params-file config/tracker.yaml"
    )


def run(args: argparse.Namespace) -> int:
    from abtrack_ros.ros.node import main

    return main(["abtrack-node", *args.ros_args])
