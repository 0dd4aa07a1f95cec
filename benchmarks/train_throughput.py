"""Training throughput on this CPU: fp32 vs bf16-autocast training steps, and the data loader alone.

    python benchmarks/train_throughput.py [--config config/models/abtrack_default_cpu.yaml]
        [--batch-size 32] [--warmup 3] [--steps 20] [--workers 1,2] [--loader-rounds 5]
        [--loader-batches 8] [--sequences 20] [--frames 40] [--threads N]

Prints one JSON object (docs/training.md, "bf16 training on CPU"). The training steps are the
trainer's own (``StageTrainer.train_step``: forward, float32 losses, backward, clipping, AdamW) in
stage vtp (stage 1, most of the training time) on one fixed batch of sampled pairs, so no data
loading is timed; fp32 and bf16 alternate step by step (the order flips every round) so that load
drifting on the machine does not decide between them, and the median step counts. The loader is
the trainer's (``train_loader`` with the epoch sampler) over a synthetic set written to a temporary
folder, timed alone with the main process waiting on it, from its first batch of a round (worker
start-up and prefetch excluded) to its last; the worker counts alternate round by round.
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import default_collate

from abtrack_ros.config import ABTrackConfig, load_config
from abtrack_ros.data import generate_synthetic, open_dataset
from abtrack_ros.model import build_model
from abtrack_ros.training.distributed import DistributedContext
from abtrack_ros.training.precision import CPUINFO, cpu_has_native_bf16
from abtrack_ros.training.sampler import EpochShardSampler, PairDataset, PairSettings, WeightedSource
from abtrack_ros.training.trainer import StageTrainer, prepare_for_stage, train_loader

REPO = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = REPO / "config" / "models" / "abtrack_default_cpu.yaml"
CPU = torch.device("cpu")
STAGE = "vtp"
SEED = 0


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="model and training config")
    parser.add_argument("--batch-size", type=int, help="pairs per step (default: the config's)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps per precision first")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per precision")
    parser.add_argument("--workers", default="1,2", help="loader worker counts, comma separated")
    parser.add_argument("--loader-rounds", type=int, default=5, help="timed rounds per worker count")
    parser.add_argument("--loader-batches", type=int, default=8, help="batches per loader round (>= 2)")
    parser.add_argument("--sequences", type=int, default=20, help="synthetic sequences to generate")
    parser.add_argument("--frames", type=int, default=40, help="frames per synthetic sequence")
    parser.add_argument("--threads", type=int, help="torch threads of the training steps (default: "
                        "torch's; on a loaded machine 1 avoids threads waiting on each other)")
    args = parser.parse_args(argv)
    args.workers = [int(w) for w in args.workers.split(",")]
    positive = [args.steps, args.loader_rounds, args.loader_batches - 1, args.warmup + 1, *args.workers]
    positive += [n for n in (args.batch_size, args.threads) if n is not None]
    if min(positive) < 1:
        parser.error("--steps, --loader-rounds, --batch-size, --threads and worker counts must be >= 1, "
                     "--warmup >= 0, --loader-batches >= 2")
    return args


def round_order(names: list, round_index: int) -> list:
    """The configurations of one round, the order flipped every other round."""
    return list(names) if round_index % 2 == 0 else list(reversed(names))


def cpu_name() -> str:
    """The CPU's model name from /proc/cpuinfo ("unknown" elsewhere)."""
    try:
        lines = CPUINFO.read_text().splitlines()
    except OSError:
        return "unknown"
    names = (line.partition(":")[2].strip() for line in lines if line.startswith("model name"))
    return next(names, "unknown")


def pair_dataset(cfg: ABTrackConfig, folder: Path, sequences: int, frames: int) -> PairDataset:
    """A synthetic set (procedural textures, the generator's default frame size) read as training pairs."""
    generate_synthetic(folder, sequences, frames, SEED, "medium", split="train", real_images="off")
    source = WeightedSource("synthetic", open_dataset(f"synthetic:{folder}", "train"), 1.0)
    return PairDataset([source], PairSettings.from_config(cfg), cfg.train.seed)


def precision_trainers(cfg: ABTrackConfig, folder: Path) -> dict[str, StageTrainer]:
    """fp32 and (where the CPU has native bf16) bf16 trainers of the same initial stage-1 model."""
    torch.manual_seed(SEED)
    model = prepare_for_stage(build_model(dataclasses.replace(cfg.model, vtp_masks=True, bdm=False)), STAGE)
    ctx = DistributedContext(rank=0, world_size=1, local_rank=0, device=CPU)
    flags = {"fp32": False, "bf16": True} if cpu_has_native_bf16() else {"fp32": False}
    trainers = {}
    for name, amp_cpu in flags.items():
        run_cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, amp_cpu=amp_cpu))
        trainers[name] = StageTrainer(STAGE, copy.deepcopy(model).train(), run_cfg, ctx, folder / name,
                                      "benchmark")
    return trainers


def time_train_steps(trainers: dict[str, StageTrainer], batch: dict, warmup: int, steps: int) -> dict:
    """Median seconds per training step of each precision, the precisions interleaved."""
    for trainer in trainers.values():
        for _ in range(warmup):
            trainer.train_step(trainer.model, batch)
    times: dict[str, list[float]] = {name: [] for name in trainers}
    for round_index in range(steps):
        for name in round_order(list(trainers), round_index):
            start = time.perf_counter()
            trainers[name].train_step(trainers[name].model, batch)
            times[name].append(time.perf_counter() - start)
    pairs = batch["box"].shape[0]
    result = {name: {"median_step_s": round(statistics.median(t), 4),
                     "pairs_per_s": round(pairs / statistics.median(t), 2),
                     "min_step_s": round(min(t), 4), "max_step_s": round(max(t), 4)}
              for name, t in times.items()}
    if "bf16" in result:
        result["bf16_speedup"] = round(result["bf16"]["pairs_per_s"] / result["fp32"]["pairs_per_s"], 3)
    return result


def time_loaders(data: PairDataset, cfg: ABTrackConfig, workers: list[int], rounds: int,
                 batches: int) -> dict:
    """Median pairs/s of the training loader alone per worker count, the counts interleaved."""
    batch_size = cfg.train.batch_size
    loaders = {}
    for count in workers:
        sampler = EpochShardSampler(batch_size * batches)
        train = dataclasses.replace(cfg.train, num_workers=count)
        loaders[count] = (sampler, train_loader(data, sampler, train, CPU))
    rates: dict[int, list[float]] = {count: [] for count in workers}
    for round_index in range(rounds):
        for count in round_order(workers, round_index):
            sampler, loader = loaders[count]
            sampler.set_epoch(round_index)  # new pairs each round, the same for every worker count
            batch_iter = iter(loader)
            next(batch_iter)
            start = time.perf_counter()
            timed = sum(1 for _ in batch_iter)
            rates[count].append(timed * batch_size / (time.perf_counter() - start))
    return {str(count): {"pairs_per_s": round(statistics.median(r), 2), "rounds": [round(x, 2) for x in r]}
            for count, r in rates.items()}


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    cfg = load_config(args.config)
    if args.batch_size is not None:
        cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, batch_size=args.batch_size))
    batch_size = cfg.train.batch_size
    with tempfile.TemporaryDirectory(prefix="abtrack_throughput_") as tmp:
        data = pair_dataset(cfg, Path(tmp) / "data", args.sequences, args.frames)
        batch = default_collate([data[(0, k)] for k in range(batch_size)])
        train = time_train_steps(precision_trainers(cfg, Path(tmp) / "logs"), batch, args.warmup, args.steps)
        loader = time_loaders(data, cfg, args.workers, args.loader_rounds, args.loader_batches)
    # Loader pairs/s over training pairs/s: >= 1 when the loader alone outpaces the model; while
    # training, its workers share the cores with the model's threads.
    keeps_up = {workers: {name: round(result["pairs_per_s"] / train[name]["pairs_per_s"], 2)
                          for name in ("fp32", "bf16") if name in train}
                for workers, result in loader.items()}
    report = {
        "machine": {"cpu": cpu_name(), "logical_cpus": os.cpu_count(),
                    "torch_threads": torch.get_num_threads(), "native_bf16": cpu_has_native_bf16(),
                    "torch": torch.__version__},
        "config": str(args.config), "stage": STAGE, "batch_size": batch_size,
        "model": {k: getattr(cfg.model, k) for k in ("backbone", "depth", "template_size", "search_size",
                                                     "head_channels")},
        "train_step": {"warmup_steps": args.warmup, "timed_steps": args.steps, **train},
        "loader": {"batches_per_round": args.loader_batches, "rounds": args.loader_rounds,
                   "synthetic_set": {"sequences": args.sequences, "frames": args.frames},
                   "workers": loader},
        "loader_over_train": keeps_up,
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
