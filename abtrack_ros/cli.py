"""The `abtrack` command line: one sub-command per module in abtrack_ros.commands.

Each command module defines HELP (one line), add_arguments(parser) and run(args) -> int.
Modules are imported only when their command runs, so `abtrack --help` stays fast and a
command that needs rclpy does not make the others need it.
"""
from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = {
    "synth": "Generate a synthetic tracking dataset in the GOT-10k layout.",
    "selflabel": "Label real video without labels: keep the stretches where ABTrack and CSRT agree (GOT-10k layout).",
    "train": "Train ABTrack: VTP training, pruning, BDM fine-tuning (one stage or all).",
    "prune": "Binarise the VTP masks of a checkpoint and slice its blocks.",
    "eval": "One-pass evaluation on a dataset with the standard metrics (and peers).",
    "bench": "Speed benchmark: model and tracker step, cost curve, per-block times.",
    "export": "Build deployable artefacts (ONNX graphs, TensorRT engines, fp16 checkpoint) into a folder.",
    "track": "Track a video file or a folder of frames from a first box.",
    "node": "Run the ROS 2 tracker node (same as `ros2 run abtrack_ros tracker_node`).",
    "demo": "The main demo: camera replay -> tracker node over DDS -> summary and video.",
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="abtrack", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, help_text in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        parser.parse_args(argv)  # prints help or the usage error
        parser.print_help()
        return 0 if not argv or argv[0] in ("-h", "--help") else 2
    name = argv[0]
    module = importlib.import_module(f"abtrack_ros.commands.{name}")
    cmd_parser = argparse.ArgumentParser(prog=f"abtrack {name}", description=module.HELP)
    module.add_arguments(cmd_parser)
    if name == "node":  # ROS arguments (--ros-args ...) go to rclpy untouched
        args, ros_args = cmd_parser.parse_known_args(argv[1:])
        args.ros_args = ros_args
    else:
        args = cmd_parser.parse_args(argv[1:])
    return int(module.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
