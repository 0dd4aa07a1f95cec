"""`abtrack bench`: speed benchmark (model, tracker step, cost curve, per-block costs)."""
from __future__ import annotations

import argparse
import json
import sys

from abtrack_ros.tracking.runtime import add_tracker_arguments, backend_options_from_args, set_threads

HELP = "Speed benchmark: model and tracker step, cost curve, per-block times."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_tracker_arguments(parser)
    parser.add_argument("--iterations", type=int, default=None,
                        help="timed calls per measurement, split evenly over the rounds")
    parser.add_argument("--rounds", type=int, default=None,
                        help="interleaved rounds: every measurement once per round, in a shuffled order (default 20)")
    parser.add_argument("--quick", action="store_true", help="a few iterations only (smoke test)")
    parser.add_argument("--json", action="store_true", help="print exactly one JSON object on stdout")
    parser.add_argument("--accuracy-dataset", default=None,
                        help="FORMAT:PATH for the backends' accuracy check (default: a generated synthetic set)")
    parser.add_argument("--no-backends", action="store_true",
                        help="skip the backends comparison (torch/onnxruntime, fp32/bf16/int8)")


def run(args: argparse.Namespace) -> int:
    from abtrack_ros.evaluation.bench import BenchSettings, format_table, run_benchmark

    settings = BenchSettings.quick() if args.quick else BenchSettings()
    for name in ("iterations", "rounds"):
        value = getattr(args, name)
        if value is not None:
            if value < 1:
                print(f"abtrack bench: error: --{name} must be >= 1", file=sys.stderr)
                return 2
            setattr(settings, name, value)
    # With --json, stdout carries the JSON object only; progress goes to stderr.
    log = (lambda msg: print(msg, file=sys.stderr)) if args.json else print
    try:
        threads = set_threads(args.threads)
        report = run_benchmark(args.checkpoint, args.device, args.half, threads, settings, log,
                               accuracy_dataset=args.accuracy_dataset, compare=not args.no_backends,
                               cache_dir=args.cache_dir, backend=args.backend,
                               backend_options=backend_options_from_args(args))
    except ValueError as exc:
        print(f"abtrack bench: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(report, indent=2) if args.json else format_table(report))
    for warning in report["warnings"]:  # also in the report; stderr so that they are seen next to a JSON file
        print(f"abtrack bench: warning: {warning}", file=sys.stderr)
    return 0
