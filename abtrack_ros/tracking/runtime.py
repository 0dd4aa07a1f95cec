"""Command-line plumbing shared by `abtrack eval`, `abtrack bench` and `abtrack track`."""
from __future__ import annotations

import argparse
from typing import Optional

import cv2
import torch

from abtrack_ros.tracking.tracker import Tracker


def add_tracker_arguments(parser: argparse.ArgumentParser) -> None:
    """--checkpoint, --device, --half, --threads."""
    parser.add_argument("--checkpoint", default=None,
                        help="model checkpoint (.pt); default: the package's default model")
    parser.add_argument("--device", default="cpu", help="torch device: cpu, cuda, cuda:1 ... (default cpu)")
    parser.add_argument("--half", action="store_true", help="fp16 inference (CUDA only)")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads for torch and OpenCV (default: torch's default)")


def set_threads(threads: Optional[int]) -> int:
    """Apply a thread count to torch and OpenCV; returns the count torch uses."""
    if threads is not None:
        if threads < 1:
            raise ValueError(f"--threads must be >= 1, got {threads}")
        torch.set_num_threads(threads)
        cv2.setNumThreads(threads)
    return torch.get_num_threads()


def tracker_from_args(args: argparse.Namespace, cfg_overrides: Optional[dict] = None) -> Tracker:
    """A Tracker from --checkpoint/--device/--half (a warning is logged when the weights are untrained)."""
    return Tracker.from_checkpoint(args.checkpoint, device=args.device, half=args.half, cfg_overrides=cfg_overrides)
