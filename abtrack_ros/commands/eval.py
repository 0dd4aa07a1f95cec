"""`abtrack eval`: one-pass evaluation of ABTrack (and OpenCV peers) with the standard metrics."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from abtrack_ros.evaluation.adaptivity import DEFAULT_MAX_STATIC_PATTERNS, DEFAULT_SWEEP_THRESHOLDS
from abtrack_ros.tracking.runtime import (add_bypass_arguments, add_tracker_arguments, apply_bypass_arguments,
                                          set_threads, tracker_from_args)

HELP = "One-pass evaluation on a dataset with the standard metrics (and peers)."
DEFAULT_PLOT_CAP = 8


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", required=True, help="FORMAT:PATH (got10k, lasot, trackingnet, uav123, otb, synthetic)")
    parser.add_argument("--split", default=None, help="dataset split (e.g. val for GOT-10k)")
    add_tracker_arguments(parser)
    parser.add_argument("--peers", default="", help="comma-separated OpenCV peers: csrt,kcf,mil")
    parser.add_argument("--max-sequences", type=int, default=None, help="evaluate only the first N sequences")
    add_bypass_arguments(parser)
    parser.add_argument("--no-difficulty-pass", action="store_true",
                        help="skip the second (no-BDM) pass of ABTrack that the adaptivity's difficulty "
                             "correlation needs")
    parser.add_argument("--bypass-sweep", action="store_true",
                        help="also sweep the bypass threshold and run static block patterns of the block "
                             "counts it reaches (many passes: slow)")
    parser.add_argument("--sweep-thresholds", default=",".join(f"{t:g}" for t in DEFAULT_SWEEP_THRESHOLDS),
                        help="comma-separated bypass thresholds of --bypass-sweep (default %(default)s)")
    parser.add_argument("--sweep-patterns", type=int, default=DEFAULT_MAX_STATIC_PATTERNS,
                        help="most static patterns per block count in --bypass-sweep: all when there are "
                             "at most this many, else a seeded random sample (default %(default)s)")
    parser.add_argument("--results", default=None,
                        help="score this existing results folder (one sub-folder per tracker) instead of running")
    parser.add_argument("--plot-sequence", default="all",
                        help="sequence for the executed-blocks/IoU plot, 'all' (up to --plot-cap) or 'none'")
    parser.add_argument("--plot-cap", type=int, default=DEFAULT_PLOT_CAP, help="most per-sequence plots with 'all'")
    parser.add_argument("--out", required=True, help="output folder (metrics.json, report.md, plots, results/)")


def run(args: argparse.Namespace) -> int:
    try:
        return _evaluate(args)
    except ValueError as exc:  # bad dataset, results folder, peer name, checkpoint config ...
        print(f"abtrack eval: error: {exc}", file=sys.stderr)
        return 2


def _evaluate(args: argparse.Namespace) -> int:
    from abtrack_ros.data import load_frame, open_dataset, parse_spec
    from abtrack_ros.evaluation import failure
    from abtrack_ros.evaluation.adaptivity import evaluate_adaptivity, parse_thresholds, report_lines
    from abtrack_ros.evaluation.ope import OURS, ABTrackRunner, run_tracker, score_results_folder
    from abtrack_ros.evaluation.peers import make_peers
    from abtrack_ros.evaluation.plots import plot_blocks_and_iou, plot_success_and_precision
    from abtrack_ros.evaluation.report import write_metrics_json, write_report

    dataset_format, _ = parse_spec(args.dataset)
    if dataset_format == "coco":
        raise SystemExit("abtrack eval: coco holds single images, not videos; choose a tracking benchmark")
    if args.max_sequences is not None and args.max_sequences < 1:
        raise SystemExit("abtrack eval: --max-sequences must be >= 1")
    sweep_thresholds = parse_thresholds(args.sweep_thresholds) if args.bypass_sweep else None
    if args.bypass_sweep and args.results is not None:
        raise ValueError("--bypass-sweep runs the model: it cannot go with --results")
    if args.sweep_patterns < 1:
        raise ValueError(f"--sweep-patterns must be >= 1, got {args.sweep_patterns}")
    sequences = open_dataset(args.dataset, args.split)[: args.max_sequences]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    threads = set_threads(args.threads)
    meta = {"dataset": args.dataset, "split": args.split, "sequences": len(sequences), "threads": threads}
    sections = {}

    if args.results is not None:
        all_scores = score_results_folder(Path(args.results), dataset_format, sequences)
        meta["mode"] = f"scored existing results in {args.results}"
    else:
        peer_names = [p.strip().lower() for p in args.peers.split(",") if p.strip()]
        peers = make_peers(peer_names)  # unknown names fail here, before any tracking
        tracker = tracker_from_args(args)
        apply_bypass_arguments(tracker, args)
        if sweep_thresholds and not tracker.model.bdm_enabled:
            raise ValueError("--bypass-sweep needs a model with BDMs on (no --no-bdm)")
        meta.update(mode="ran", weights=tracker.weights_description, device=str(tracker.device),
                    dtype="fp16" if tracker.half else "fp32", bdm=bool(tracker.model.bdm_enabled),
                    backend=tracker.backend.description)
        results_root = out / "results"
        ran = {}
        for runner in [ABTrackRunner(tracker), *peers]:
            ran[runner.name] = run_tracker(runner, sequences, results_root, dataset_format, load_frame)
        # Score what was written, so that `--results` on this folder gives identical numbers.
        all_scores = score_results_folder(results_root, dataset_format, sequences, list(ran))
        if tracker.model.bdm_enabled:
            sections["adaptivity"] = evaluate_adaptivity(
                tracker, sequences, ran[OURS], load_frame, difficulty_pass=not args.no_difficulty_pass,
                sweep_thresholds=sweep_thresholds, max_patterns=args.sweep_patterns, out_dir=out)

    sections["failure"] = failure.failure_section(all_scores)
    images = [p.name for p in plot_success_and_precision(all_scores, out)]
    images += _sequence_plots(all_scores, args, out, plot_blocks_and_iou)
    adaptivity = sections.get("adaptivity")
    if adaptivity and "bypass_sweep" in adaptivity:
        images.append(adaptivity["bypass_sweep"]["plot"])
    write_metrics_json(all_scores, meta, out / "metrics.json", sections)
    extra_lines = (report_lines(adaptivity) if adaptivity else []) + failure.report_lines(all_scores)
    write_report(all_scores, meta, out / "report.md", images, extra_lines)
    _print_summary(all_scores)
    print(f"wrote {out / 'metrics.json'}, {out / 'report.md'} and {len(images)} plots")
    return 0


def _sequence_plots(all_scores, args, out: Path, plot) -> list[str]:
    ours = next((s for s in all_scores if s.executed), None)
    if ours is None or args.plot_sequence == "none":
        return []
    if args.plot_sequence == "all":
        names = list(ours.executed)[: max(args.plot_cap, 0)]
    elif args.plot_sequence in ours.executed:
        names = [args.plot_sequence]
    else:
        raise SystemExit(f"abtrack eval: --plot-sequence {args.plot_sequence!r} is not an evaluated sequence")
    folder = out / "sequences"
    folder.mkdir(exist_ok=True)
    return [
        str(plot(ours.executed[n], ours.frame_ious[n], n, folder / f"{n}_blocks_iou.png").relative_to(out))
        for n in names
    ]


def _print_summary(all_scores) -> None:
    for s in all_scores:
        o = s.overall
        blocks = o.get("blocks_executed_mean")
        extra = f" blocks={blocks:.2f}" if blocks is not None else ""
        print(f"{s.name:>8}: AUC={o['auc']:.3f} P={o['precision']:.3f} Pnorm={o['norm_precision']:.3f} "
              f"AO={o['ao']:.3f} SR50={o['sr50']:.3f} SR75={o['sr75']:.3f} FPS={o['fps']:.1f}{extra}")
