"""`abtrack track`: track one target through a video file, a folder of frames or a rosbag2's images."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Optional

import numpy as np

from abtrack_ros.tracking.runtime import (add_bypass_arguments, add_tracker_arguments, apply_bypass_arguments,
                                          set_threads, tracker_from_args)

if TYPE_CHECKING:  # hints only: these load lazily, where used (the bag module needs ROS)
    from abtrack_ros.ros.bags import BagImage, DetectionBagWriter
    from abtrack_ros.tracking.tracker import Tracker
    from abtrack_ros.tracking.video import AnnotatedVideoWriter

# (RGB frame, the recorded image it came from: None for --video)
Item = tuple[np.ndarray, Optional["BagImage"]]

HELP = "Track a video file, a folder of frames or a rosbag2's images from a first box."
# The first image's detection is the given box itself.
INIT_SCORE = 1.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--video", help="video file or folder of frame images")
    src.add_argument("--bag", help="rosbag2 (folder, .mcap or .db3): track its images and write the detections "
                                   "as an MCAP rosbag2 (topic /abtrack/detection)")
    parser.add_argument("--topic", help="--bag: the image topic (sensor_msgs/Image or CompressedImage); "
                                        "default: the bag's only image topic")
    parser.add_argument("--box", required=True, help="target box in the first frame: x,y,w,h (pixels)")
    add_tracker_arguments(parser)
    add_bypass_arguments(parser)
    parser.add_argument("--max-frames", type=int, default=None, help="stop after N frames")
    parser.add_argument("--out", required=True,
                        help="output folder (annotated video, boxes, plot; with --bag the detections bag)")


def parse_box(text: str) -> np.ndarray:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) != 4:
        raise ValueError(f"--box must be x,y,w,h (four numbers), got {text!r}")
    return np.array(values)


def run(args: argparse.Namespace) -> int:
    try:
        return _track(args)
    except ValueError as exc:
        print(f"abtrack track: error: {exc}", file=sys.stderr)
        return 2


def _track(args: argparse.Namespace) -> int:
    from abtrack_ros.evaluation.plots import plot_blocks_and_iou
    from abtrack_ros.tracking.video import AnnotatedVideoWriter

    box = parse_box(args.box)
    name, fps, items = _open_input(args)
    set_threads(args.threads)
    tracker = tracker_from_args(args)
    apply_bypass_arguments(tracker, args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    writer = AnnotatedVideoWriter(out / "tracked", fps)
    detections = _detection_writer(args, out)
    try:
        boxes, scores, executed, step_ms = _track_frames(args, tracker, box, items, writer, detections)
    finally:
        bag_path = detections.close() if detections is not None else None
    video_path = writer.close()
    if not boxes:
        raise ValueError(f"no frames could be read from {name}")
    np.savetxt(out / "boxes.txt", np.array(boxes), fmt="%.2f", delimiter=",")
    plot = plot_blocks_and_iou(np.array(executed), np.array(scores), name,
                               out / "blocks_score.png", value_label="score")
    mean_ms = float(np.mean(step_ms)) if step_ms else float("nan")
    print(f"weights: {tracker.weights_description}")
    print(f"{len(boxes)} frames, mean step {mean_ms:.1f} ms, mean blocks "
          f"{np.mean([sum(e) for e in executed[1:]]) if len(executed) > 1 else float('nan'):.2f}")
    print(f"wrote {video_path}, {out / 'boxes.txt'} and {plot}")
    if bag_path:
        print(f"wrote {detections.count} detections ({detections.topic}) to the MCAP rosbag2 {bag_path}")
    return 0


def _open_input(args: argparse.Namespace) -> tuple[str, float, Iterator[Item]]:
    """(name, frame rate, (RGB frame, recorded image or None) pairs) of --video or --bag."""
    if args.video:
        from abtrack_ros.tracking.video import FrameSource

        if args.topic:
            raise ValueError("--topic is for --bag")
        source = FrameSource(args.video)
        return Path(args.video).name, source.fps, ((frame, None) for frame in source)
    from abtrack_ros.ros.bags import decoded, open_image_topic, read_images

    recording = open_image_topic(args.bag, args.topic)
    return (f"{recording.path.name} {recording.topic}", recording.rate_hz,
            decoded(read_images(recording, args.max_frames)))


def _detection_writer(args: argparse.Namespace, out: Path) -> Optional[DetectionBagWriter]:
    if not args.bag:
        return None
    from abtrack_ros.ros.bags import DETECTION_BAG_NAME, DetectionBagWriter

    return DetectionBagWriter(out / DETECTION_BAG_NAME)


def _track_frames(args: argparse.Namespace, tracker: Tracker, box: np.ndarray, items: Iterator[Item],
                  writer: AnnotatedVideoWriter,
                  detections: Optional[DetectionBagWriter]) -> tuple[list, list, list, list]:
    """Initialise on the first frame, track the others; (boxes, scores, executed, step ms)."""
    from abtrack_ros.tracking.tracker import STATE_LOST, STATE_TRACKING
    from abtrack_ros.tracking.video import BOX_COLOUR_INIT, BOX_COLOUR_LOST, BOX_COLOUR_TRACKING, annotate

    boxes, scores, executed, step_ms = [], [], [], []
    for index, (frame, image) in enumerate(items):
        if args.max_frames is not None and index >= args.max_frames:
            break
        if index == 0:
            tracker.initialize(frame, box)
            if detections is not None:
                detections.write(image, tracker.box, INIT_SCORE, STATE_TRACKING)
            boxes.append(tracker.box)
            scores.append(np.nan)
            executed.append([False] * tracker.num_blocks)
            writer.write(annotate(frame, tracker.box, BOX_COLOUR_INIT, ["init"]))
            continue
        result = tracker.track(frame)
        if detections is not None:
            detections.write(image, result.box, result.confidence, result.state)
        boxes.append(result.box)
        scores.append(result.confidence)
        executed.append(result.executed)
        step_ms.append(sum(result.timings_ms.values()))
        colour = BOX_COLOUR_LOST if result.state == STATE_LOST else BOX_COLOUR_TRACKING
        writer.write(annotate(frame, result.box, colour, [
            f"#{index} {result.state} conf {result.confidence:.2f} (raw {result.score:.2f})",
            f"blocks {result.blocks_executed}/{tracker.num_blocks}  {step_ms[-1]:.1f} ms",
        ]))
    return boxes, scores, executed, step_ms
