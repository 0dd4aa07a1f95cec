"""`abtrack bench`: speed of the model and of the whole tracker step, for the three configurations
of the paper's ablation (baseline, +BDM, +BDM+VTP), the cost curve over the number of executed
blocks, and the per-block costs of Table 4.

All timings are at batch 1, after warm-up, with the median and min/max over the timed
iterations. How the three models are obtained from one checkpoint is in docs/tracking.md.
"""
from __future__ import annotations

import copy
import platform
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Callable, Optional

import cv2
import numpy as np
import torch

import abtrack_ros
from abtrack_ros.config import TrackerConfig
from abtrack_ros.tracking import geometry as geo
from abtrack_ros.tracking.tracker import RANDOM_WEIGHTS_WARNING, Tracker, load_model_or_untrained

if TYPE_CHECKING:
    from abtrack_ros.backends import BackendOptions

CONFIG_NAMES = ("baseline", "bdm", "bdm_vtp")
BENCH_SEED = 0
BENCH_FRAME_SIZE = (320, 240)


@dataclass
class BenchSettings:
    iterations: int = 100
    warmup: int = 10
    num_frames: int = 30
    block_iterations: int = 200
    accuracy_sequences: int = 4  # generated synthetic validation set of the backends' accuracy check
    accuracy_frames: int = 60

    @classmethod
    def quick(cls) -> "BenchSettings":
        return cls(iterations=5, warmup=1, num_frames=4, block_iterations=5, accuracy_sequences=1, accuracy_frames=8)


@dataclass
class TimingStats:
    median_ms: float
    min_ms: float
    max_ms: float

    @classmethod
    def of(cls, samples_ms: list[float]) -> "TimingStats":
        return cls(statistics.median(samples_ms), min(samples_ms), max(samples_ms))


class Stopwatch:
    """Times calls on one device (CUDA work is synchronised before reading the clock)."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"

    def _sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()

    def time(
        self,
        fn: Callable[[int], object],
        iterations: int,
        warmup: int,
        before: Optional[Callable[[int], None]] = None,
    ) -> TimingStats:
        """``fn(i)`` for warm-up then timed iterations (``i`` counts over both); ``before(i)`` runs untimed."""
        samples = []
        for i in range(warmup + iterations):
            if before is not None:
                before(i)
            if i < warmup:
                fn(i)
                continue
            self._sync()
            start = time.perf_counter()
            fn(i)
            self._sync()
            samples.append(1000.0 * (time.perf_counter() - start))
        return TimingStats.of(samples)


@dataclass
class BenchModels:
    """The three models of the ablation, all on the same backbone."""

    baseline: torch.nn.Module
    bdm: torch.nn.Module
    bdm_vtp: torch.nn.Module
    weights: str
    notes: list[str] = field(default_factory=list)

    def named(self) -> list[tuple[str, torch.nn.Module]]:
        return list(zip(CONFIG_NAMES, (self.baseline, self.bdm, self.bdm_vtp)))


def copy_matching_weights(source: torch.nn.Module, target: torch.nn.Module) -> int:
    """Copy every tensor whose name and shape match (the others keep their init); returns the count."""
    target_state = target.state_dict()
    matching = {k: v for k, v in source.state_dict().items() if k in target_state and target_state[k].shape == v.shape}
    target.load_state_dict(matching, strict=False)
    return len(matching)


def build_bench_models(checkpoint: Optional[str]) -> BenchModels:
    """baseline / bdm / bdm_vtp from one checkpoint (None = the default model)."""
    from abtrack_ros import model as model_api

    model, cfg, weights = load_model_or_untrained(checkpoint)
    notes = []
    if model.pruning_plan is not None:
        bdm_vtp = model
        unpruned = model_api.build_model(replace(cfg.model, pretrained=None, vtp_masks=False, bdm=True))
        copied = copy_matching_weights(model, unpruned)
        notes.append(
            "checkpoint is pruned: bdm and baseline are an unpruned model of the same backbone holding the "
            f"{copied} checkpoint tensors whose shapes still fit (embeddings, norms, BDMs, head; not the "
            "sliced block matrices): timing only"
        )
    else:
        unpruned = model
        bdm_vtp = copy.deepcopy(model)
        if not bdm_vtp.has_vtp_masks:
            bdm_vtp.add_vtp_masks()
            notes.append("checkpoint has no VTP masks: bdm_vtp is pruned from all-ones masks (timing only)")
        model_api.prune_model(bdm_vtp, cfg.model.prune_ratio)
        notes.append(f"bdm_vtp = the checkpoint pruned here with ratio {cfg.model.prune_ratio}")
    baseline = copy.deepcopy(unpruned)
    baseline.bdm_enabled = False
    unpruned.bdm_enabled = True
    bdm_vtp.bdm_enabled = True
    for m in (baseline, unpruned, bdm_vtp):
        m.set_forced_pattern(None)
    return BenchModels(baseline=baseline, bdm=unpruned, bdm_vtp=bdm_vtp, weights=weights, notes=notes)


@dataclass
class BenchSequence:
    """Real frames with their boxes, and the template/search patches cut from them as when tracking."""

    frames: list[np.ndarray]
    boxes: np.ndarray
    template_patch: np.ndarray
    search_patches: list[np.ndarray]

    @classmethod
    def generate(cls, num_frames: int, template_size: int, search_size: int, cfg: TrackerConfig) -> "BenchSequence":
        from abtrack_ros.data import generate_synthetic, load_frame, open_dataset

        with tempfile.TemporaryDirectory(prefix="abtrack_bench_") as tmp:
            generate_synthetic(tmp, 1, num_frames, BENCH_SEED, size=BENCH_FRAME_SIZE, real_images="off")
            sequence = open_dataset(f"synthetic:{tmp}", "train")[0]
            frames = [load_frame(p) for p in sequence.frames]
        boxes = sequence.boxes
        template_window = geo.crop_window(
            geo.box_center(boxes[0]), geo.crop_side(boxes[0], cfg.template_factor), template_size
        )
        searches = []
        for i in range(1, len(frames)):  # search around the previous box, as the tracker does
            window = geo.crop_window(
                geo.box_center(boxes[i - 1]), geo.crop_side(boxes[i - 1], cfg.search_factor), search_size
            )
            searches.append(geo.crop_patch(frames[i], window))
        return cls(frames, boxes, geo.crop_patch(frames[0], template_window), searches)


def _model_timing(tracker: Tracker, seq: BenchSequence, watch: Stopwatch, settings: BenchSettings):
    model = tracker.backend  # the torch backend is the nn.Module itself
    with torch.inference_mode():
        tokens = model.embed_template(tracker.normalise(seq.template_patch))
        searches = [tracker.normalise(p) for p in seq.search_patches]
        executed: list[int] = []

        def forward(i: int) -> None:
            out = model.forward_embedded(tokens, searches[i % len(searches)])
            executed.append(int(out.executed[0].sum()))

        stats = watch.time(forward, settings.iterations, settings.warmup)
    return stats, float(np.mean(executed[settings.warmup :]))


def _step_timing(tracker: Tracker, seq: BenchSequence, watch: Stopwatch, settings: BenchSettings) -> TimingStats:
    steps = len(seq.frames) - 1

    def restart_at_sequence_end(i: int) -> None:
        if i % steps == 0:
            tracker.initialize(seq.frames[0], seq.boxes[0])

    return watch.time(
        lambda i: tracker.track(seq.frames[1 + i % steps]), settings.iterations, settings.warmup,
        before=restart_at_sequence_end,
    )


def _cost_curve(tracker: Tracker, seq: BenchSequence, watch: Stopwatch, settings: BenchSettings) -> list[dict]:
    """Model time with exactly k optional blocks forced to run (the first k after the enforced ones).

    The k values are timed in turn within every iteration (not one k after the other), so a
    change of load on a shared machine during the measurement bends no part of the curve.
    """
    model, backend = tracker.model, tracker.backend
    n, n_enf = model.num_blocks, model.n_enf
    patterns = [[True] * (n_enf + k) + [False] * (n - n_enf - k) for k in range(n - n_enf + 1)]
    executed: list[int] = [0] * len(patterns)

    def forward_with(k: int) -> Callable[[], None]:
        def forward() -> None:
            model.set_forced_pattern(patterns[k])
            out = backend.forward_embedded(tokens, searches[0])
            executed[k] = int(out.executed[0].sum())
        return forward

    try:
        with torch.inference_mode():
            tokens = backend.embed_template(tracker.normalise(seq.template_patch))
            searches = [tracker.normalise(seq.search_patches[0])]
            stats = interleaved_stats([forward_with(k) for k in range(len(patterns))], settings.iterations,
                                      settings.warmup, watch)
    finally:
        model.set_forced_pattern(None)
    return [{"optional_blocks_run": k, "blocks_executed": executed[k], "model_ms_median": st.median_ms,
             "model_ms_min": st.min_ms, "model_ms_max": st.max_ms} for k, st in enumerate(stats)]


def _per_block_ms(tracker_by_name: dict[str, Tracker], seq: BenchSequence, watch: Stopwatch,
                  settings: BenchSettings) -> dict[str, float]:
    """Mean over the optional blocks of the median time of: the block alone, the block with its BDM
    decision (on the token sequence that carries the bypass token), and the same with the VTP-sliced block."""
    reference = tracker_by_name["baseline"]
    backbone = reference.model.backbone
    with torch.inference_mode():
        tokens = torch.cat([reference.model.embed_template(reference.normalise(seq.template_patch)),
                            backbone.embed_search(reference.normalise(seq.search_patches[0]))], dim=1)
        with_bypass = torch.cat([tokens, backbone.bypass_token.expand(1, -1, -1)], dim=1)
        results = {}
        for key, name, x, use_bdm in (("block", "baseline", tokens, False), ("block_bdm", "bdm", with_bypass, True),
                                      ("block_bdm_vtp", "bdm_vtp", with_bypass, True)):
            vit = tracker_by_name[name].model.backbone
            optional = range(vit.n_enf, vit.num_blocks)
            medians = []
            for index in optional:
                block = vit.blocks[index]
                decision = vit.decisions[index - vit.n_enf]

                def run_block(_i: int, block=block, decision=decision) -> None:
                    if use_bdm:
                        decision(x[:, -1])
                    block(x)

                medians.append(watch.time(run_block, settings.block_iterations, settings.warmup).median_ms)
            results[key] = float(np.mean(medians))
    return results


# The speed goals of docs/speed.md, checked on ratios measured in one run.
GOAL_STEP_FPS = 60.0
GOAL_BDM_OVERHEAD_PCT = 3.0
GOAL_PRUNED_BLOCK_RATIO = 0.75
GOAL_COST_CURVE_DEVIATION_PCT = 10.0
GOAL_AUC_DIFF_POINTS = 0.5


def interleaved_stats(calls: list[Callable[[], object]], iterations: int, warmup: int,
                      watch: Stopwatch) -> list[TimingStats]:
    """Timing of each call, the calls timed in turn every iteration, so that load from other jobs
    on a shared machine hits all of them alike (their ratios are then meaningful)."""
    samples: list[list[float]] = [[] for _ in calls]
    for i in range(warmup + iterations):
        for fn, store in zip(calls, samples):
            watch._sync()
            start = time.perf_counter()
            fn()
            watch._sync()
            if i >= warmup:
                store.append(1000.0 * (time.perf_counter() - start))
    return [TimingStats.of(store) for store in samples]


def _block_ratios(trackers: dict[str, Tracker], seq: BenchSequence, watch: Stopwatch,
                  settings: BenchSettings) -> dict[str, float]:
    """Per optional block, timed interleaved: the block on [template | search], the same block with
    the bypass token appended, the BDM decision with its scalar compare, and the VTP-sliced block.
    The BDM overhead is the decision plus the extra token, in % of the plain block."""
    bdm, pruned = trackers["bdm"].model.backbone, trackers["bdm_vtp"].model.backbone
    with torch.inference_mode():
        tokens = torch.cat([trackers["bdm"].model.embed_template(trackers["bdm"].normalise(seq.template_patch)),
                            bdm.embed_search(trackers["bdm"].normalise(seq.search_patches[0]))], dim=1)
        with_bypass = torch.cat([tokens, bdm.bypass_token.expand(1, -1, -1)], dim=1)
        rows = []
        for index in range(bdm.n_enf, bdm.num_blocks):
            block, decision = bdm.blocks[index], bdm.decisions[index - bdm.n_enf]
            rows.append([stats.median_ms for stats in interleaved_stats([
                lambda block=block: block(tokens),
                lambda block=block: block(with_bypass),
                lambda decision=decision: float(decision(with_bypass[:, -1])) > bdm.bypass_threshold,
                lambda index=index: pruned.blocks[index](with_bypass),
            ], settings.block_iterations, settings.warmup, watch)])
    plain, with_token, decision_ms, pruned_ms = (float(v) for v in np.mean(np.array(rows), axis=0))
    token_pct = 100.0 * (with_token / plain - 1.0)
    decision_pct = 100.0 * decision_ms / plain
    return {"bdm_overhead_pct": token_pct + decision_pct, "bdm_decision_pct": decision_pct,
            "bypass_token_pct": token_pct, "pruned_block_ratio": pruned_ms / with_token}


def cost_curve_deviation_pct(curve: list[dict]) -> float:
    """Largest deviation of a cost-curve point from the least-squares line, in % of the line."""
    blocks = np.array([p["blocks_executed"] for p in curve], float)
    times = np.array([p["model_ms_median"] for p in curve], float)
    if len(curve) < 3:
        return 0.0  # two points always lie on a line
    fitted = np.polyval(np.polyfit(blocks, times, 1), blocks)
    return float(np.max(np.abs(times - fitted) / fitted) * 100.0)


def speed_checks(configs: list[dict], cost_curve: list[dict], ratios: dict[str, float], backends: dict) -> dict:
    """The speed goals and whether this run met them (all from ratios of this one run)."""
    step_fps = next(c["fps"] for c in configs if c["name"] == "bdm_vtp")
    deviation = cost_curve_deviation_pct(cost_curve)
    measured = {"step_fps": step_fps, **ratios, "cost_curve_deviation_pct": deviation}
    met = {"step_fps": step_fps >= GOAL_STEP_FPS,
           "bdm_overhead_pct": ratios["bdm_overhead_pct"] < GOAL_BDM_OVERHEAD_PCT,
           "bdm_decision_pct": ratios["bdm_decision_pct"] < GOAL_BDM_OVERHEAD_PCT,
           "pruned_block_ratio": ratios["pruned_block_ratio"] <= GOAL_PRUNED_BLOCK_RATIO,
           "cost_curve_deviation_pct": deviation <= GOAL_COST_CURVE_DEVIATION_PCT}
    ran = [v for v in backends.get("variants", []) if "skipped" not in v]
    if ran:
        measured["max_abs_auc_diff"] = max(abs(v["auc_diff"]) for v in ran)
        met["max_abs_auc_diff"] = measured["max_abs_auc_diff"] <= GOAL_AUC_DIFF_POINTS
    goals = {"step_fps": f">= {GOAL_STEP_FPS}", "bdm_overhead_pct": f"< {GOAL_BDM_OVERHEAD_PCT}",
             "bdm_decision_pct": f"< {GOAL_BDM_OVERHEAD_PCT} (the decision alone)",
             "bypass_token_pct": "(informative: the bypass token's share of the overhead)",
             "pruned_block_ratio": f"<= {GOAL_PRUNED_BLOCK_RATIO}",
             "cost_curve_deviation_pct": f"<= {GOAL_COST_CURVE_DEVIATION_PCT}",
             "max_abs_auc_diff": f"<= {GOAL_AUC_DIFF_POINTS} (points, every backend vs torch fp32)"}
    return {"measured": measured, "goals": goals, "met": met}


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
REFERENCE_VARIANT = 0  # the first variant is the accuracy reference (torch eager)
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


def compare_backends(model: torch.nn.Module, device: str, half: bool, threads: int, settings: BenchSettings,
                     seq: BenchSequence, sequences: list, variants: tuple[BackendVariant, ...],
                     cache_dir: Optional[str], log: Callable[[str], None] = print, ephemeral: bool = False) -> list[dict]:
    """Step time, FPS and tracking AUC of each backend variant on the same model, in one run.

    ``auc_diff`` is the AUC difference (points) to the first variant (torch eager). A variant that
    cannot run here (package missing, wrong device) is reported with ``skipped`` and the reason.
    """
    from abtrack_ros.backends import BackendOptions, BackendUnavailableError

    rows = []
    reference_auc = None
    watch = Stopwatch(torch.device(device))
    for variant in variants:
        options = BackendOptions(int8=variant.int8, bf16=variant.bf16, cache_dir=cache_dir, threads=threads,
                                 ephemeral=ephemeral)
        start = time.perf_counter()
        try:
            # Trackers cast their model in place (bf16, fp16): each variant gets its own fp32 copy.
            tracker = Tracker(copy.deepcopy(model).float(), TrackerConfig(), device=device,
                              half=half and variant.backend != "onnxruntime", backend=variant.backend,
                              backend_options=options)
        except BackendUnavailableError as exc:
            rows.append({"name": variant.name, "backend": variant.backend, "skipped": str(exc)})
            continue
        setup_s = time.perf_counter() - start
        log(f"timing backend {variant.name} ({tracker.backend.description}) ...")
        model_stats, _ = _model_timing(tracker, seq, watch, settings)
        step_stats = _step_timing(tracker, seq, watch, settings)
        auc, blocks = _tracking_auc(tracker, sequences)
        if reference_auc is None:
            reference_auc = auc
        rows.append({
            "name": variant.name, "backend": variant.backend, "description": tracker.backend.description,
            "setup_s": setup_s,
            "model_ms_median": model_stats.median_ms,
            "step_ms_median": step_stats.median_ms, "step_ms_min": step_stats.min_ms,
            "step_ms_max": step_stats.max_ms, "fps": 1000.0 / step_stats.median_ms,
            "auc": auc, "auc_diff": auc - reference_auc, "blocks_executed_mean": blocks,
        })
    return rows


def run_benchmark(checkpoint: Optional[str], device: str, half: bool, threads: int,
                  settings: BenchSettings, log: Callable[[str], None] = print,
                  accuracy_dataset: Optional[str] = None, compare: bool = True,
                  cache_dir: Optional[str] = None, backend: str = "torch",
                  backend_options: Optional["BackendOptions"] = None) -> dict:
    """The whole benchmark; returns the JSON-ready report.

    ``compare`` adds the ``backends`` section (bdm_vtp model on every backend/precision, with the
    tracking AUC on ``accuracy_dataset`` or a generated synthetic set). ``backend`` and
    ``backend_options`` select what runs the three configurations and the cost curve.
    """
    from abtrack_ros.backends import BackendOptions

    models = build_bench_models(checkpoint)
    untrained = models.weights.startswith(RANDOM_WEIGHTS_WARNING)
    backend_options = replace(backend_options or BackendOptions(), ephemeral=untrained)
    tracker_cfg = TrackerConfig()
    trackers = {name: Tracker(m, tracker_cfg, device=device, half=half, backend=backend,
                              backend_options=backend_options) for name, m in models.named()}
    reference = trackers["bdm_vtp"]
    seq = BenchSequence.generate(settings.num_frames, reference.template_size, reference.search_size, tracker_cfg)
    watch = Stopwatch(reference.device)

    configs = []
    for name, tracker in trackers.items():
        log(f"timing {name} ...")
        model_stats, blocks = _model_timing(tracker, seq, watch, settings)
        step_stats = _step_timing(tracker, seq, watch, settings)
        configs.append({
            "name": name,
            "model_ms_median": model_stats.median_ms, "model_ms_min": model_stats.min_ms,
            "model_ms_max": model_stats.max_ms,
            "step_ms_median": step_stats.median_ms, "step_ms_min": step_stats.min_ms,
            "step_ms_max": step_stats.max_ms,
            "fps": 1000.0 / step_stats.median_ms,
            "model_fps": 1000.0 / model_stats.median_ms,
            "blocks_executed_mean": blocks,
        })
    log("timing the cost curve ...")
    cost_curve = _cost_curve(reference, seq, watch, settings)
    log("timing single blocks ...")
    per_block = _per_block_ms(trackers, seq, watch, settings)
    log("timing block ratios (interleaved) ...")
    ratios = _block_ratios(trackers, seq, watch, settings)
    backends: dict = {}
    if compare:
        variants = CUDA_VARIANTS if reference.device.type == "cuda" else CPU_VARIANTS
        with tempfile.TemporaryDirectory(prefix="abtrack_accuracy_") as tmp:
            sequences, source = accuracy_sequences(accuracy_dataset, settings, tmp)
            rows = compare_backends(models.bdm_vtp, device, half, threads, settings, seq, sequences, variants,
                                    cache_dir, log, ephemeral=untrained)
        backends = {"config": "bdm_vtp", "accuracy_dataset": source, "auc_unit": "points (0..100)",
                    "reference": variants[REFERENCE_VARIANT].name, "variants": rows}
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
        "frames": f"synthetic sequence, {len(seq.frames)} frames {BENCH_FRAME_SIZE[0]}x{BENCH_FRAME_SIZE[1]}, seed {BENCH_SEED}",
        "versions": {"abtrack_ros": abtrack_ros.__version__, "torch": torch.__version__, "numpy": np.__version__,
                     "opencv": cv2.__version__, "python": platform.python_version()},
        "configs": configs,
        "cost_curve": cost_curve,
        "per_block_ms": per_block,
        **({"backends": backends} if compare else {}),
        "speed_checks": speed_checks(configs, cost_curve, ratios, backends),
    }


def format_table(report: dict) -> str:
    """Markdown tables of a report (configs, cost curve, per-block costs)."""
    lines = [f"weights: {report['weights']}",
             f"device: {report['device']} ({report['device_name']}), {report['dtype']}, threads {report['threads']}, "
             f"backbone {report['backbone']}", "",
             "| config | model ms (median [min, max]) | step ms (median [min, max]) | FPS | blocks run |",
             "|---|---|---|---|---|"]
    for c in report["configs"]:
        lines.append(f"| {c['name']} | {c['model_ms_median']:.2f} [{c['model_ms_min']:.2f}, {c['model_ms_max']:.2f}] | "
                     f"{c['step_ms_median']:.2f} [{c['step_ms_min']:.2f}, {c['step_ms_max']:.2f}] | {c['fps']:.1f} | "
                     f"{c['blocks_executed_mean']:.2f} |")
    lines += ["", "| blocks executed | model ms (median) |", "|---|---|"]
    lines += [f"| {p['blocks_executed']} | {p['model_ms_median']:.2f} |" for p in report["cost_curve"]]
    b = report["per_block_ms"]
    lines += ["", "| ViT block | + BDM | + BDM + VTP |", "|---|---|---|",
              f"| {b['block']:.3f} ms | {b['block_bdm']:.3f} ms | {b['block_bdm_vtp']:.3f} ms |"]
    if report.get("backends"):
        section = report["backends"]
        lines += ["", f"backends ({section['config']}; AUC on {section['accuracy_dataset']}):", "",
                  "| backend | step ms (median [min, max]) | FPS | AUC | AUC diff vs " + section["reference"] + " |",
                  "|---|---|---|---|---|"]
        for r in section["variants"]:
            if "skipped" in r:
                lines.append(f"| {r['name']} | skipped: {r['skipped']} | | | |")
                continue
            lines.append(f"| {r['name']} | {r['step_ms_median']:.2f} [{r['step_ms_min']:.2f}, {r['step_ms_max']:.2f}] | "
                         f"{r['fps']:.1f} | {r['auc']:.2f} | {r['auc_diff']:+.2f} |")
    if report.get("speed_checks"):
        checks = report["speed_checks"]
        lines += ["", "| speed check | measured | goal | met |", "|---|---|---|---|"]
        verdict = {True: "yes", False: "NO", None: "-"}
        lines += [f"| {key} | {value:.3f} | {checks['goals'][key]} | {verdict[checks['met'].get(key)]} |"
                  for key, value in checks["measured"].items()]
    return "\n".join(lines)
