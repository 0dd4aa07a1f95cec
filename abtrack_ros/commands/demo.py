"""`abtrack demo`: camera replay -> tracker node over DDS -> live lines, summary, video, plot."""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from abtrack_ros.config import BACKEND_NAMES

HELP = "The main demo: a camera replays a sequence to the tracker node over DDS; summary and video."
DEFAULT_FRAMES = 120
DEFAULT_OUT = "outputs/demo"
DEFAULT_RATE_HZ = 30.0


def _box(text: str) -> np.ndarray:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"box must be x,y,w,h numbers, got '{text}'") from None
    if len(values) != 4 or not np.all(np.isfinite(values)) or values[2] <= 0 or values[3] <= 0:
        raise argparse.ArgumentTypeError(f"box must be x,y,w,h with positive w and h, got '{text}'")
    return np.asarray(values, dtype=np.float64)


def _positive(kind: type):
    def parse(text: str):
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive, got {text}")
        return value
    return parse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    src = parser.add_mutually_exclusive_group()
    src.add_argument("--video", type=Path, help="replay a video file (needs --box)")
    src.add_argument("--frames", type=Path, help="replay a folder of images in name order (needs --box)")
    src.add_argument("--webcam", type=int, metavar="N", help="stream webcam N (needs --box)")
    src.add_argument("--bag", type=Path, help="replay a rosbag2 (folder, .mcap or .db3) as recorded (needs --box)")
    parser.add_argument("--topic", help="--bag: the image topic (sensor_msgs/Image or CompressedImage); "
                                        "default: the bag's only image topic")
    parser.add_argument("--box", type=_box, help="x,y,w,h of the target in the first frame (pixels)")
    parser.add_argument("--num-frames", type=_positive(int), default=DEFAULT_FRAMES,
                        help=f"frames to replay (default {DEFAULT_FRAMES})")
    parser.add_argument("--rate", type=_positive(float), help=f"camera rate in Hz (default {DEFAULT_RATE_HZ:g}; "
                                                               "not with --bag, which keeps the recorded pace)")
    parser.add_argument("--rate-scale", type=_positive(float),
                        help="--bag: replay at this times the recorded pace (default 1)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic sequence")
    parser.add_argument("--checkpoint", default="", help="model checkpoint; default: the package's model")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--backend", default="auto", choices=BACKEND_NAMES,
                        help="inference backend of the node (default auto: the fastest installed)")
    parser.add_argument("--threads", type=_positive(int), default=1,
                        help="CPU threads of the node's model (default 1: the camera shares the machine)")
    parser.add_argument("--node-param", action="append", default=[], metavar="NAME:=VALUE",
                        help="any other tracker-node parameter (repeatable), e.g. qos_depth:=5")
    parser.add_argument("--out", type=Path, default=Path(DEFAULT_OUT), help=f"output folder ({DEFAULT_OUT})")
    parser.add_argument("--startup-timeout", type=_positive(float), default=120.0,
                        help="seconds to wait for the node to load the model")
    parser.add_argument("--quiet", action="store_true", help="no line per frame, only the summary")


def run(args: argparse.Namespace) -> int:
    from abtrack_ros.ros.bags import bag_source
    from abtrack_ros.ros.demo import DemoError, DemoOptions, format_summary, run_demo
    from abtrack_ros.ros.sources import capture_source, folder_source, synthetic_source

    external = args.video or args.frames or args.webcam is not None or args.bag
    if external and args.box is None:
        print("abtrack demo: --video/--frames/--webcam/--bag need --box x,y,w,h (the target in the first frame)")
        return 2
    bag_error = _bag_option_error(args)
    if bag_error:
        print(f"abtrack demo: {bag_error}")
        return 2
    opts = DemoOptions(out_dir=args.out, rate_hz=args.rate or DEFAULT_RATE_HZ, checkpoint=args.checkpoint,
                       device=args.device, backend=args.backend, threads=args.threads, node_params=args.node_param,
                       startup_timeout_s=args.startup_timeout, quiet=args.quiet)
    with tempfile.TemporaryDirectory(prefix="abtrack_demo_") as tmp:
        try:
            if args.video:
                source = capture_source(str(args.video), args.box, args.num_frames)
            elif args.frames:
                source = folder_source(args.frames, args.box, args.num_frames)
            elif args.webcam is not None:
                source = capture_source(args.webcam, args.box, args.num_frames)
            elif args.bag:
                source = bag_source(args.bag, args.topic, args.box, args.num_frames)
                # the replay keeps the recorded gaps, scaled to this mean rate (also the video's)
                opts.rate_hz = source.recording.rate_hz * (args.rate_scale or 1.0)
            else:
                source = synthetic_source(Path(tmp) / "synthetic", args.num_frames, args.seed)
            summary = run_demo(source, opts)
        except (DemoError, ValueError) as exc:
            print(f"abtrack demo: {exc}")
            return 1
    print(format_summary(summary))
    return 0


def _bag_option_error(args: argparse.Namespace) -> str:
    """Why the bag options do not fit the source ("" when they do)."""
    if args.bag and args.rate is not None:
        return "--bag replays at the recorded pace: change it with --rate-scale, not --rate"
    if not args.bag and (args.rate_scale is not None or args.topic is not None):
        return "--rate-scale and --topic are for --bag"
    return ""
