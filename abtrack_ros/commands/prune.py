"""`abtrack prune`: binarise the VTP masks of a checkpoint and slice its blocks."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

HELP = "Binarise the VTP masks of a checkpoint and slice its blocks."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", type=Path, required=True, help="a checkpoint with relaxed VTP masks")
    parser.add_argument("--out", type=Path, required=True, help="where to write the pruned checkpoint")
    parser.add_argument("--ratio", type=float, help="pruning ratio mu (default: the checkpoint's model.prune_ratio)")


def run(args: argparse.Namespace) -> int:
    from abtrack_ros.model import CheckpointError, load_checkpoint
    from abtrack_ros.training.trainer import TrainingError, prune_checkpoint

    try:
        out = prune_checkpoint(args.checkpoint, args.out, args.ratio)
        model, _, _ = load_checkpoint(out)
    except (CheckpointError, TrainingError) as exc:
        print(f"abtrack prune: error: {exc}", file=sys.stderr)
        return 2
    plan = model.pruning_plan
    attn = [len(k) for k in plan.attn_keep]
    mlp = [len(k) for k in plan.mlp_keep]
    print(f"pruned with ratio {plan.ratio}: attention dims kept per block {attn}, MLP units {mlp}")
    print(f"wrote {out}")
    return 0
