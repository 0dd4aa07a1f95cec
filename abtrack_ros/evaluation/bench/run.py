"""``run_benchmark``: every measurement of ``abtrack bench`` in one run, as one JSON-ready report."""
from __future__ import annotations

import platform
import tempfile
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional, Union

import cv2
import numpy as np
import torch

import abtrack_ros
from abtrack_ros.config import TrackerConfig
from abtrack_ros.tracking.tracker import RANDOM_WEIGHTS_WARNING, Tracker

from .compare import CPU_VARIANTS, CUDA_VARIANTS, REFERENCE_VARIANT, accuracy_sequences, compare_backends
from .measure import (ORDER_SEED, BenchSettings, time_blocks, time_confidence, time_configs, time_cost_curve,
                      time_head)
from .report import fixed_cost, goal_spreads, speed_checks
from .subjects import BENCH_FRAME_SIZE, BENCH_SEED, BenchSequence, build_bench_models
from .timing import SPREAD_LIMIT, Stopwatch, spread_warnings

if TYPE_CHECKING:
    from abtrack_ros.backends import BackendOptions


def timing_method(settings: BenchSettings) -> str:
    return (f"{settings.rounds} interleaved rounds (every job once per round, order shuffled with seed "
            f"{ORDER_SEED}), {settings.per_round(settings.iterations)} calls per job per round "
            f"({settings.per_round(settings.block_iterations)} for blocks and head) after {settings.warmup} warm-up "
            f"calls; medians are over the rounds' medians; a ratio is inconclusive when its per-round IQR "
            f"straddles its pivot (1.0, or the goal) or, for comparisons, exceeds {100 * SPREAD_LIMIT:.0f} % "
            "of its median")


def run_benchmark(checkpoint: Union[str, Path, None], device: str, half: bool, threads: int,
                  settings: BenchSettings, log: Callable[[str], None] = print,
                  accuracy_dataset: Optional[str] = None, compare: bool = True,
                  cache_dir: Optional[str] = None, backend: str = "torch",
                  backend_options: Optional["BackendOptions"] = None) -> dict:
    """The whole benchmark; returns the JSON-ready report.

    ``checkpoint`` is a file or an ``abtrack export`` folder (None = the default model; a folder's
    checkpoint and backend are used, its graphs are not: the bench exports its own models).
    ``compare`` adds the ``backends`` section (bdm_vtp model on every backend/precision, with the
    tracking AUC on ``accuracy_dataset`` or a generated synthetic set). ``backend`` and
    ``backend_options`` select what runs the three configurations and the cost curve.
    """
    from abtrack_ros.backends import BackendOptions, resolve_artefacts

    models = build_bench_models(checkpoint)
    untrained = models.weights.startswith(RANDOM_WEIGHTS_WARNING)
    # An exported folder gives its backend, not its cache: the ablation's other models (unpruned,
    # or pruned here) would otherwise leave their graphs in the deployable folder.
    _, backend, _ = resolve_artefacts(checkpoint, backend, backend_options, device)
    backend_options = replace(backend_options or BackendOptions(), ephemeral=untrained)
    tracker_cfg = TrackerConfig()
    trackers = {name: Tracker(m, tracker_cfg, device=device, half=half, backend=backend,
                              backend_options=backend_options) for name, m in models.named()}
    reference = trackers["bdm_vtp"]
    seq = BenchSequence.generate(settings.num_frames, reference.template_size, reference.search_size, tracker_cfg)
    watch = Stopwatch(reference.device)

    log("timing the configurations (interleaved) ...")
    timing = time_configs(trackers, seq, watch, settings)
    log("timing the cost curve (interleaved) ...")
    cost_curve = time_cost_curve(reference, seq, watch, settings)
    log("timing single blocks (interleaved) ...")
    per_block, block_rounds = time_blocks(trackers, seq, watch, settings)
    log("timing the head (interleaved) ...")
    head, head_spread = time_head(reference, seq, watch, settings)
    log("timing the confidence ...")
    confidence_ms = time_confidence(reference, seq, watch, settings)
    ratios = {**timing.ratios, "head_fused_vs_unfused": head_spread}
    backends: dict = {}
    if compare:
        variants = CUDA_VARIANTS if reference.device.type == "cuda" else CPU_VARIANTS
        with tempfile.TemporaryDirectory(prefix="abtrack_accuracy_") as tmp:
            sequences, source = accuracy_sequences(accuracy_dataset, settings, tmp)
            rows, backend_ratios = compare_backends(models.bdm_vtp, device, half, threads, settings, seq, sequences,
                                                    variants, cache_dir, log, ephemeral=untrained)
        ratios.update(backend_ratios)
        backends = {"config": "bdm_vtp", "accuracy_dataset": source, "auc_unit": "points (0..100)",
                    "reference": variants[REFERENCE_VARIANT].name, "variants": rows}
    goals = goal_spreads({"step_fps": timing.step_fps_rounds["bdm_vtp"], **block_rounds})
    block_ratios = {key: float(np.median(values)) for key, values in block_rounds.items()}
    warnings = spread_warnings(ratios) + spread_warnings({f"speed check {k}": s for k, s in goals.items()})
    model_cfg = reference.model.config
    return {
        "weights": models.weights,
        "notes": models.notes,
        "device": str(reference.device),
        "device_name": torch.cuda.get_device_name(reference.device) if reference.device.type == "cuda"
        else platform.processor() or platform.machine(),
        "dtype": "fp16" if half else "fp32",
        "backend": reference.backend.description,
        "threads": threads,
        "backbone": model_cfg.backbone,
        "num_blocks": reference.model.num_blocks,
        "n_enf": reference.model.n_enf,
        "bypass_threshold": reference.model.bypass_threshold,
        "prune_ratio": model_cfg.prune_ratio,
        "batch_size": 1,
        "settings": asdict(settings),
        "timing_method": timing_method(settings),
        "frames": f"synthetic sequence, {len(seq.frames)} frames {BENCH_FRAME_SIZE[0]}x{BENCH_FRAME_SIZE[1]}, "
                  f"seed {BENCH_SEED}",
        "versions": {"abtrack_ros": abtrack_ros.__version__, "torch": torch.__version__, "numpy": np.__version__,
                     "opencv": cv2.__version__, "python": platform.python_version()},
        "configs": timing.configs,
        "cost_curve": cost_curve,
        "fixed_cost": fixed_cost(cost_curve, head, timing.stage_ms["bdm_vtp"], confidence_ms),
        "per_block_ms": per_block,
        "ratios": ratios,
        **({"backends": backends} if compare else {}),
        "speed_checks": speed_checks(timing.configs, cost_curve, block_ratios, backends, goals),
        "warnings": warnings,
    }
