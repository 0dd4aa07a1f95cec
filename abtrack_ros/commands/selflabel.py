"""`abtrack selflabel`: tracking sequences from unlabelled real video, labelled where ABTrack and CSRT agree."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

HELP = "Label real video without labels: keep the stretches where ABTrack and CSRT agree (GOT-10k layout)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from abtrack_ros.evaluation.self_labels import SelfLabelSettings
    from abtrack_ros.tracking.runtime import add_tracker_arguments

    defaults = SelfLabelSettings()
    parser.add_argument("--video", type=Path, action="append", default=[], metavar="FILE",
                        help="a video file (repeatable); default: the sample videos found on the machine "
                             "(OpenCV's vtest.avi and others from opencv-doc)")
    parser.add_argument("--out", type=Path, required=True, help="new dataset root: OUT/train, OUT/val, OUT/meta.json")
    parser.add_argument("--val-from", type=float, default=0.7,
                        help="share of each video's frames before its val part (default 0.7)")
    parser.add_argument("--start-every", type=int, default=defaults.start_every,
                        help=f"frames between proposal start frames (default {defaults.start_every})")
    parser.add_argument("--segment-frames", type=int, default=defaults.segment_frames,
                        help=f"longest sequence, frames (default {defaults.segment_frames})")
    parser.add_argument("--min-frames", type=int, default=defaults.min_frames,
                        help=f"shortest sequence kept, frames (default {defaults.min_frames})")
    parser.add_argument("--agree-iou", type=float, default=defaults.agree_iou,
                        help=f"ABTrack vs CSRT IoU on every kept frame (default {defaults.agree_iou})")
    parser.add_argument("--backward-iou", type=float, default=defaults.backward_iou,
                        help=f"backward CSRT vs the start box (default {defaults.backward_iou})")
    add_tracker_arguments(parser)


def run(args: argparse.Namespace) -> int:
    import cv2

    from abtrack_ros.data import find_sample_videos
    from abtrack_ros.evaluation.peers import PeerUnavailableError
    from abtrack_ros.evaluation.self_labels import SelfLabelSettings, build_self_labelled_set
    from abtrack_ros.model import CheckpointError
    from abtrack_ros.tracking.runtime import set_threads, tracker_from_args

    start = time.perf_counter()
    try:
        set_threads(args.threads)
        settings = SelfLabelSettings(start_every=args.start_every, segment_frames=args.segment_frames,
                                     min_frames=args.min_frames, agree_iou=args.agree_iou,
                                     backward_iou=args.backward_iou)
        videos = args.video or find_sample_videos()
        if not videos:
            raise ValueError("no --video given and no sample video found (scripts/setup.sh installs opencv-doc)")
        tracker = tracker_from_args(args)
        meta = build_self_labelled_set(videos, args.out, tracker, settings, args.val_from,
                                       progress=lambda line: print(line, flush=True))
    except (ValueError, PeerUnavailableError, CheckpointError, OSError, cv2.error) as exc:
        print(f"abtrack selflabel: error: {exc}", file=sys.stderr)
        return 2
    counts = meta["sequences"]
    print(f"wrote {counts['train']} train and {counts['val']} val sequences from {len(videos)} video(s) "
          f"to {args.out} in {time.perf_counter() - start:.0f} s (see {args.out / 'meta.json'})")
    return 0
