"""`abtrack train`: the three-stage pipeline (VTP training, pruning, BDM fine-tuning)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

HELP = "Train ABTrack: VTP training, pruning, BDM fine-tuning (one stage or all)."


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _specs(text: str) -> list[str]:
    specs = [s.strip() for s in text.split(",") if s.strip()]
    if not specs:
        raise argparse.ArgumentTypeError("expected FORMAT:PATH[,FORMAT:PATH...]")
    return specs


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="strict YAML config (config/models/*.yaml)")
    parser.add_argument("--data", type=_specs, metavar="FORMAT:PATH[,...]",
                        help="training datasets (replace train.datasets; equal weights)")
    parser.add_argument("--val-data", type=_specs, metavar="FORMAT:PATH[,...]",
                        help="validation datasets (replace train.val_datasets)")
    parser.add_argument("--stage", default="all", choices=("all", "vtp", "prune", "bdm"),
                        help="which stage(s) to run (default: all)")
    parser.add_argument("--init", type=Path, metavar="CHECKPOINT",
                        help="start the (first) stage from these weights")
    parser.add_argument("--resume", type=Path, metavar="CHECKPOINT",
                        help="continue an interrupted stage from its OUT/<stage>/checkpoint.pt")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder")
    parser.add_argument("--epochs", type=_positive_int, help="epochs of each training stage")
    parser.add_argument("--pairs-per-epoch", type=_positive_int, help="pairs per epoch (all GPUs together)")
    parser.add_argument("--batch-size", type=_positive_int, help="pairs per step and per GPU")
    parser.add_argument("--num-workers", type=int, help="data loader workers per process")
    parser.add_argument("--ratio", type=float, help="pruning ratio mu (default: model.prune_ratio)")
    parser.add_argument("--device", choices=("cpu", "cuda"), help="default: cuda when available")
    parser.add_argument("--amp-cpu", action="store_true", default=None,
                        help="bf16 autocast on CPU (train.amp_cpu; needs native bf16, docs/training.md)")


def run(args: argparse.Namespace) -> int:
    from abtrack_ros.config import ConfigError
    from abtrack_ros.data import DatasetError
    from abtrack_ros.model import CheckpointError
    from abtrack_ros.training.trainer import TrainingError, TrainOptions, run_training

    opts = TrainOptions(
        out_dir=args.out, config=args.config, stage=args.stage, init=args.init, resume=args.resume,
        data=args.data, val_data=args.val_data, epochs=args.epochs, pairs_per_epoch=args.pairs_per_epoch,
        batch_size=args.batch_size, num_workers=args.num_workers, prune_ratio=args.ratio,
        device=args.device, amp_cpu=args.amp_cpu,
    )
    try:
        results = run_training(opts)
    except (ConfigError, DatasetError, CheckpointError, TrainingError) as exc:
        print(f"abtrack train: error: {exc}", file=sys.stderr)
        return 2
    for result in results:
        print(f"{result.stage}: {result.model_path}")
    return 0
