"""Command-line plumbing shared by `abtrack eval`, `abtrack bench`, `abtrack track` and `abtrack demo`."""
from __future__ import annotations

import argparse
import math
from typing import Optional

import cv2
import torch
import yaml

from abtrack_ros.config import BACKEND_NAMES
from abtrack_ros.tracking.tracker import Tracker


def add_backend_arguments(parser: argparse.ArgumentParser) -> None:
    """--backend, --int8, --bf16, --cache-dir."""
    parser.add_argument("--backend", choices=BACKEND_NAMES, default="auto",
                        help="inference backend (default auto: onnxruntime on CPU when installed, torch with "
                             "--bf16; tensorrt on CUDA when installed, else torch; docs/speed.md)")
    parser.add_argument("--int8", action="store_true", help="onnxruntime: dynamically quantised int8 blocks")
    parser.add_argument("--bf16", action="store_true", help="torch on CPU: bfloat16 weights and activations")
    parser.add_argument("--cache-dir", default=None,
                        help="folder for exported ONNX graphs / TensorRT engines (default ~/.cache/abtrack_ros)")


def add_tracker_arguments(parser: argparse.ArgumentParser) -> None:
    """--checkpoint, --device, --half, --threads and the backend options."""
    parser.add_argument("--checkpoint", default=None,
                        help="model checkpoint (.pt); default: the package's default model")
    parser.add_argument("--device", default="cpu", help="torch device: cpu, cuda, cuda:1 ... (default cpu)")
    parser.add_argument("--half", action="store_true", help="fp16 inference (CUDA only)")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads for torch and OpenCV (default: torch's default)")
    parser.add_argument("--tracker-set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a key of the checkpoint's tracker config section (repeatable; "
                             "e.g. found_score=0.5; values are YAML scalars, keys checked strictly)")
    add_backend_arguments(parser)


def add_bypass_arguments(parser: argparse.ArgumentParser) -> None:
    """--no-bdm and --bypass-threshold (the node's bypass_enabled and bypass_threshold)."""
    bypass = parser.add_mutually_exclusive_group()
    bypass.add_argument("--no-bdm", action="store_true", help="run every block (bypass decision modules off)")
    bypass.add_argument("--bypass-threshold", type=unit_interval, default=None,
                        help="a block is skipped when its bypass probability exceeds this, 0..1 "
                             "(default: the model's own)")


def unit_interval(text: str) -> float:
    """An argparse type: a number in 0..1."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be a number in 0..1, got {text!r}")
    return value


def apply_bypass_arguments(tracker: Tracker, args: argparse.Namespace) -> None:
    """Set the model's bypass switches from --no-bdm / --bypass-threshold (ValueError outside 0..1)."""
    if args.bypass_threshold is not None:
        tracker.model.bypass_threshold = args.bypass_threshold
    if args.no_bdm:
        tracker.model.bdm_enabled = False


def parse_tracker_settings(items: list[str]) -> dict:
    """``["found_score=0.5", ...]`` -> ``{"found_score": 0.5}``; values read as YAML scalars (data,
    never code). Unknown keys are refused later, by the strict tracker config."""
    settings = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--tracker-set expects KEY=VALUE, got {item!r}")
        value = yaml.safe_load(text)
        if isinstance(value, (dict, list)):
            raise ValueError(f"--tracker-set {key}: a scalar is expected, got {text!r}")
        settings[key.strip()] = value
    return settings


def set_threads(threads: Optional[int]) -> int:
    """Apply a thread count to torch and OpenCV; returns the count torch uses."""
    if threads is not None:
        if threads < 1:
            raise ValueError(f"--threads must be >= 1, got {threads}")
        torch.set_num_threads(threads)
        cv2.setNumThreads(threads)
    return torch.get_num_threads()


def backend_options_from_args(args: argparse.Namespace):
    """BackendOptions from --int8/--bf16/--cache-dir (ORT threads follow torch's thread count)."""
    from abtrack_ros.backends import BackendOptions

    return BackendOptions(int8=getattr(args, "int8", False), bf16=getattr(args, "bf16", False),
                          cache_dir=getattr(args, "cache_dir", None))


def tracker_from_args(args: argparse.Namespace, cfg_overrides: Optional[dict] = None) -> Tracker:
    """A Tracker from --checkpoint/--device/--half/--backend/--tracker-set (a warning is logged when
    the weights are untrained)."""
    cfg_overrides = {**parse_tracker_settings(getattr(args, "tracker_set", [])), **(cfg_overrides or {})}
    return Tracker.from_checkpoint(args.checkpoint, device=args.device, half=args.half, cfg_overrides=cfg_overrides,
                                   backend=args.backend,
                                   backend_options=backend_options_from_args(args))
