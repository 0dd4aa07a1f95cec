"""The ``backends`` section of the bench: one model on every backend and precision, timed in
interleaved rounds, with each variant's tracking AUC on a validation set (time and accuracy in
one run)."""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import Callable, Optional

import torch

from abtrack_ros.config import TrackerConfig
from abtrack_ros.tracking.tracker import Tracker

from .measure import BenchSettings, ModelCursor, StepCursor
from .subjects import BenchSequence
from .timing import Job, Stopwatch, per_round_ratios, spread


@dataclass(frozen=True)
class BackendVariant:
    """One backend/precision of the ``backends`` comparison."""

    name: str
    backend: str
    int8: bool = False
    bf16: bool = False


CPU_VARIANTS = (BackendVariant("torch_fp32", "torch"), BackendVariant("torch_bf16", "torch", bf16=True),
                BackendVariant("onnxruntime_fp32", "onnxruntime"),
                BackendVariant("onnxruntime_int8", "onnxruntime", int8=True))
CUDA_VARIANTS = (BackendVariant("torch", "torch"), BackendVariant("tensorrt", "tensorrt"))
REFERENCE_VARIANT = 0  # the first variant is the accuracy and speed reference (torch eager)
ACCURACY_SEED = 11
ACCURACY_SIZE = (320, 240)


def accuracy_sequences(spec: Optional[str], settings: BenchSettings, folder: str) -> tuple[list, str]:
    """The validation sequences of the accuracy check: ``spec`` (FORMAT:PATH) or a generated synthetic set."""
    from abtrack_ros.data import generate_synthetic, open_dataset

    if spec is not None:
        sequences = open_dataset(spec, None)
        if not sequences:
            raise ValueError(f"accuracy dataset {spec} holds no sequence")
        return sequences, spec
    count, frames = settings.accuracy_sequences, settings.accuracy_frames
    generate_synthetic(folder, count, frames, ACCURACY_SEED, size=ACCURACY_SIZE, split="val", real_images="off")
    return open_dataset(f"synthetic:{folder}", "val"), (
        f"generated synthetic: {count} sequences x {frames} frames, seed {ACCURACY_SEED}, medium")


def _tracking_auc(tracker: Tracker, sequences) -> tuple[float, float]:
    """OPE success AUC (in points, 0..100) and mean executed blocks over the sequences."""
    from abtrack_ros.data import load_frame
    from abtrack_ros.evaluation.ope import ABTrackRunner, run_sequence, score_tracker

    runner = ABTrackRunner(tracker)
    results = {seq.name: run_sequence(runner, seq, load_frame) for seq in sequences}
    overall = score_tracker("abtrack", results, sequences).overall
    return 100.0 * overall["auc"], float(overall.get("blocks_executed_mean", float("nan")))


def _build(model: torch.nn.Module, variant: BackendVariant, device: str, half: bool, threads: int,
           cache_dir: Optional[str], ephemeral: bool) -> tuple[Tracker, float]:
    """The variant's tracker and its set-up time (s); BackendUnavailableError when it cannot run here."""
    from abtrack_ros.backends import BackendOptions

    options = BackendOptions(int8=variant.int8, bf16=variant.bf16, cache_dir=cache_dir, threads=threads,
                             ephemeral=ephemeral)
    start = time.perf_counter()
    # Trackers cast their model in place (bf16, fp16): each variant gets its own fp32 copy.
    tracker = Tracker(copy.deepcopy(model).float(), TrackerConfig(), device=device,
                      half=half and variant.backend != "onnxruntime", backend=variant.backend, backend_options=options)
    return tracker, time.perf_counter() - start


def compare_backends(model: torch.nn.Module, device: str, half: bool, threads: int, settings: BenchSettings,
                     seq: BenchSequence, sequences: list, variants: tuple[BackendVariant, ...],
                     cache_dir: Optional[str], log: Callable[[str], None] = print,
                     ephemeral: bool = False) -> tuple[list[dict], dict[str, dict]]:
    """Model and step time (interleaved), FPS and tracking AUC of each variant on the same model.

    Returns the rows and the spreads of each variant's per-round step ratio to the reference.
    ``auc_diff`` is the AUC difference (points) to the first variant (torch eager). A variant that
    cannot run here (package missing, wrong device) is reported with ``skipped`` and the reason.
    """
    from abtrack_ros.backends import BackendUnavailableError

    built: dict[str, tuple[Tracker, float]] = {}
    skipped: dict[str, str] = {}
    for variant in variants:
        try:
            built[variant.name] = _build(model, variant, device, half, threads, cache_dir, ephemeral)
        except BackendUnavailableError as exc:
            skipped[variant.name] = str(exc)
    log(f"timing backends {', '.join(built)} (interleaved) ...")
    cursors = {name: (ModelCursor(t, seq), StepCursor(t, seq)) for name, (t, _) in built.items()}
    jobs = [job for name, (forward, step) in cursors.items()
            for job in (Job(f"model:{name}", forward.run), Job(f"step:{name}", step.run, step.before))]
    timed = settings.time(jobs, Stopwatch(torch.device(device))) if jobs else {}
    rows, reference_auc = [], None
    for variant in variants:
        if variant.name in skipped:
            rows.append({"name": variant.name, "backend": variant.backend, "skipped": skipped[variant.name]})
            continue
        tracker, setup_s = built[variant.name]
        log(f"tracking AUC of {variant.name} ...")
        auc, blocks = _tracking_auc(tracker, sequences)
        reference_auc = auc if reference_auc is None else reference_auc
        step = timed[f"step:{variant.name}"].stats()
        rows.append({
            "name": variant.name, "backend": variant.backend, "description": tracker.backend.description,
            "setup_s": setup_s, "model_ms_median": timed[f"model:{variant.name}"].stats().median_ms,
            "step_ms_median": step.median_ms, "step_ms_min": step.min_ms, "step_ms_max": step.max_ms,
            "fps": 1000.0 / step.median_ms, "auc": auc, "auc_diff": auc - reference_auc, "blocks_executed_mean": blocks,
        })
    names = list(built)
    ratios = {f"step_{name}_vs_{names[0]}": spread(per_round_ratios(timed[f"step:{name}"].round_medians(),
                                                                    timed[f"step:{names[0]}"].round_medians()),
                                                   pivot=1.0) for name in names[1:]}
    return rows, ratios
