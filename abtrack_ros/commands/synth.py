"""`abtrack synth`: write a synthetic tracking dataset in the GOT-10k layout."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

HELP = "Generate a synthetic tracking dataset in the GOT-10k layout."


def _frame_size(text: str) -> tuple[int, int]:
    width, sep, height = text.lower().partition("x")
    if not sep or not width.isdigit() or not height.isdigit():
        raise argparse.ArgumentTypeError(f"size must look like 320x240, got {text!r}")
    return int(width), int(height)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from abtrack_ros.data.synthetic import (
        DEFAULT_SIZE,
        DIFFICULTIES,
        REAL_IMAGE_MODES,
        SPLITS,
    )

    parser.add_argument("--out", required=True, type=Path, help="dataset root; frames go to OUT/SPLIT/")
    parser.add_argument("--sequences", type=int, default=10, help="number of videos (default 10)")
    parser.add_argument("--frames", type=int, default=50, help="frames per video (default 50)")
    parser.add_argument("--seed", type=int, default=0, help="random seed: the same seed writes the same files")
    parser.add_argument("--difficulty", choices=tuple(DIFFICULTIES), default="medium")
    parser.add_argument("--events", action="store_true",
                        help="add absence events (the target leaves the view or is fully covered for a while); "
                             "writes difficulty NAME+events")
    parser.add_argument("--size", type=_frame_size, default=DEFAULT_SIZE, metavar="WxH",
                        help=f"frame size (default {DEFAULT_SIZE[0]}x{DEFAULT_SIZE[1]})")
    parser.add_argument("--split", choices=SPLITS, default="train")
    parser.add_argument("--real-images", choices=REAL_IMAGE_MODES, default="auto",
                        help="auto: crop real photographs found on the machine when there are any; "
                             "off: procedural textures only")
    parser.add_argument("--image-dir", type=Path, action="append", dest="image_dirs", metavar="DIR",
                        help="search these folders for photographs instead of the default places (repeatable)")
    parser.add_argument("--overwrite", action="store_true", help="replace a synthetic dataset already in OUT/SPLIT")


def run(args: argparse.Namespace) -> int:
    from abtrack_ros.data.synthetic import EVENTS_SUFFIX, generate_synthetic

    start = time.perf_counter()
    difficulty = args.difficulty + EVENTS_SUFFIX if args.events else args.difficulty
    try:
        seq_dirs = generate_synthetic(
            args.out, args.sequences, args.frames, args.seed, difficulty,
            size=args.size, split=args.split, real_images=args.real_images,
            image_dirs=args.image_dirs, overwrite=args.overwrite,
        )
    except ValueError as exc:
        print(f"abtrack synth: error: {exc}", file=sys.stderr)
        return 2
    folder = args.out / args.split
    print(f"wrote {len(seq_dirs)} sequences x {args.frames} frames to {folder} "
          f"in {time.perf_counter() - start:.1f} s (see {folder / 'meta.json'})")
    return 0
