"""`abtrack track`: track one target through a video file or a folder of frames."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from abtrack_ros.tracking.runtime import add_tracker_arguments, set_threads, tracker_from_args

HELP = "Track a video file or a folder of frames from a first box."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--video", required=True, help="video file or folder of frame images")
    parser.add_argument("--box", required=True, help="target box in the first frame: x,y,w,h (pixels)")
    add_tracker_arguments(parser)
    parser.add_argument("--no-bdm", action="store_true", help="run every block (bypass decision modules off)")
    parser.add_argument("--max-frames", type=int, default=None, help="stop after N frames")
    parser.add_argument("--out", required=True, help="output folder (annotated video, boxes, plot)")


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
    from abtrack_ros.tracking.tracker import STATE_LOST
    from abtrack_ros.tracking.video import (
        BOX_COLOUR_INIT, BOX_COLOUR_LOST, BOX_COLOUR_TRACKING, AnnotatedVideoWriter, FrameSource, annotate,
    )

    box = parse_box(args.box)
    source = FrameSource(args.video)
    set_threads(args.threads)
    tracker = tracker_from_args(args)
    if args.no_bdm:
        tracker.model.bdm_enabled = False
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    writer = AnnotatedVideoWriter(out / "tracked", source.fps)
    boxes, scores, executed, step_ms = [], [], [], []
    for index, frame in enumerate(source):
        if args.max_frames is not None and index >= args.max_frames:
            break
        if index == 0:
            tracker.initialize(frame, box)
            boxes.append(tracker.box)
            scores.append(np.nan)
            executed.append([False] * tracker.num_blocks)
            writer.write(annotate(frame, tracker.box, BOX_COLOUR_INIT, ["init"]))
            continue
        result = tracker.track(frame)
        boxes.append(result.box)
        scores.append(result.score)
        executed.append(result.executed)
        step_ms.append(sum(result.timings_ms.values()))
        colour = BOX_COLOUR_LOST if result.state == STATE_LOST else BOX_COLOUR_TRACKING
        writer.write(annotate(frame, result.box, colour, [
            f"#{index} {result.state} score {result.score:.2f}",
            f"blocks {result.blocks_executed}/{tracker.num_blocks}  {step_ms[-1]:.1f} ms",
        ]))
    video_path = writer.close()
    if not boxes:
        raise ValueError(f"no frames could be read from {args.video}")
    np.savetxt(out / "boxes.txt", np.array(boxes), fmt="%.2f", delimiter=",")
    plot = plot_blocks_and_iou(np.array(executed), np.array(scores), Path(args.video).name,
                               out / "blocks_score.png", value_label="score")
    mean_ms = float(np.mean(step_ms)) if step_ms else float("nan")
    print(f"weights: {tracker.weights_description}")
    print(f"{len(boxes)} frames, mean step {mean_ms:.1f} ms, mean blocks "
          f"{np.mean([sum(e) for e in executed[1:]]) if len(executed) > 1 else float('nan'):.2f}")
    print(f"wrote {video_path}, {out / 'boxes.txt'} and {plot}")
    return 0
