"""How adaptive the bypass is: which blocks run from frame to frame, whether that follows the
difficulty of the frame, and what a bypass threshold sweep buys over static block patterns.

Definitions (docs/tracking.md, section "Adaptivity"):
- Only tracking steps count: the init frame runs no block. A frame's execution pattern is its
  tuple of executed blocks, written as a 0/1 string (as in ``<seq>_blocks.txt``).
- Entropy is in bits (log base 2) over the pattern shares; the block-count std is the population
  std (ddof 0).
- Spearman's rho is the Pearson correlation of the ranks, tied values sharing the mean of their
  ranks; it is undefined (NaN, null in JSON) with fewer than 2 frames or when a side is constant.
- A frame's difficulty is 1 - IoU of the same model with bypass off (``--no-bdm``) on the same
  sequence; frames without a scored ground truth (invalid, invisible, the init frame) are left out.
"""
from __future__ import annotations

import itertools
import math
from collections import Counter
from pathlib import Path
from typing import Callable, Iterable, Optional

import numpy as np

from abtrack_ros.evaluation.metrics import frame_ious, valid_gt_mask
from abtrack_ros.evaluation.ope import OURS, ABTrackRunner, run_sequence, score_tracker
from abtrack_ros.evaluation.results import SequenceResult
from abtrack_ros.tracking.tracker import Tracker

MIN_PATTERN_SHARE = 0.05  # a pattern "in use" runs on at least this share of the frames
DEFAULT_SWEEP_THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
DEFAULT_MAX_STATIC_PATTERNS = 30  # per block count: all patterns up to this many, else a sample
SWEEP_SEED = 0
SWEEP_PLOT = "bypass_sweep.png"

LoadFrame = Callable[[Path], np.ndarray]


# ----------------------------------------------------------------- pure metrics
def pattern_key(row: Iterable[bool]) -> str:
    """An execution pattern as a 0/1 string, one digit per block (1 = executed)."""
    return "".join("1" if v else "0" for v in row)


def pattern_shares(executed: np.ndarray) -> dict[str, float]:
    """Share of the frames (rows of an F x N bool array) per pattern, most common first."""
    counts = Counter(pattern_key(row) for row in np.asarray(executed, dtype=bool))
    total = sum(counts.values())
    return {key: count / total for key, count in counts.most_common()}


def entropy_bits(shares: Iterable[float]) -> float:
    """Shannon entropy (log base 2) of a distribution given by its shares; NaN when empty."""
    p = np.array([s for s in shares if s > 0], dtype=np.float64)
    if p.size == 0:
        return float("nan")
    return float(-np.sum(p * np.log2(p)) + 0.0)  # + 0.0 turns -0.0 (one pattern) into 0.0


def average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks; tied values share the mean of the ranks they occupy."""
    _, inverse, counts = np.unique(np.asarray(values, dtype=np.float64), return_inverse=True, return_counts=True)
    last = np.cumsum(counts)  # rank of the last member of each group of ties
    return (last - (counts - 1) / 2.0)[inverse]


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's rho with average ranks for ties; NaN with < 2 values or a constant side."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"spearman needs two 1-D arrays of one length, got {x.shape} and {y.shape}")
    if x.size < 2:
        return float("nan")
    rx, ry = average_ranks(x) - (x.size + 1) / 2.0, average_ranks(y) - (y.size + 1) / 2.0
    denominator = math.sqrt(float(np.sum(rx**2) * np.sum(ry**2)))
    return float(np.sum(rx * ry) / denominator) if denominator > 0 else float("nan")


def adaptivity_summary(executed: np.ndarray, difficulty: Optional[np.ndarray] = None) -> dict:
    """Pattern and block-count statistics of tracking steps (F x N bool); with ``difficulty``
    (one value per step, NaN = no ground truth) also its Spearman rho with the block count."""
    executed = np.asarray(executed, dtype=bool)
    counts = executed.sum(axis=1).astype(np.float64)
    shares = pattern_shares(executed)
    top_pattern, top_share = next(iter(shares.items()), (None, float("nan")))
    entry = {
        "frames": int(len(executed)),
        "patterns": len(shares),
        "top_pattern": top_pattern,
        "top_pattern_share": top_share,
        "patterns_at_least_5pct": sum(share >= MIN_PATTERN_SHARE for share in shares.values()),
        "pattern_entropy_bits": entropy_bits(shares.values()),
        "blocks_mean": float(counts.mean()) if counts.size else float("nan"),
        "blocks_std": float(counts.std()) if counts.size else float("nan"),
    }
    if difficulty is not None:
        known = np.isfinite(difficulty)
        entry["difficulty_frames"] = int(known.sum())
        entry["difficulty_spearman"] = spearman(counts[known], np.asarray(difficulty)[known])
    return entry


def step_mask(boxes: np.ndarray) -> np.ndarray:
    """Tracking steps: frames with a prediction, after the init frame (which runs no block)."""
    steps = ~np.isnan(np.asarray(boxes, dtype=np.float64)).all(axis=1)
    if steps.any():
        steps[int(np.argmax(steps))] = False
    return steps


def frame_difficulty(pred_boxes: np.ndarray, gt_boxes: np.ndarray, visible: Optional[np.ndarray]) -> np.ndarray:
    """1 - IoU per frame; NaN on the frames that are not scored (see metrics.valid_gt_mask)."""
    scored = valid_gt_mask(gt_boxes, visible)
    return np.where(scored, 1.0 - frame_ious(pred_boxes, gt_boxes), np.nan)


def measure_adaptivity(
    results: dict[str, SequenceResult], sequences, no_bdm: Optional[dict[str, SequenceResult]] = None
) -> dict:
    """Pooled (all steps of all sequences) and per-sequence adaptivity of a run with BDMs on;
    ``no_bdm`` (the same model with bypass off) gives the difficulty correlation."""
    executed, difficulty, per_sequence = [], [], {}
    for seq in sequences:
        result = results[seq.name]
        steps = step_mask(result.boxes)
        rows = result.executed[steps]
        hard = None if no_bdm is None else frame_difficulty(no_bdm[seq.name].boxes, seq.boxes, seq.visible)[steps]
        per_sequence[seq.name] = adaptivity_summary(rows, hard)
        executed.append(rows)
        difficulty.append(hard)
    pooled = adaptivity_summary(np.concatenate(executed), None if no_bdm is None else np.concatenate(difficulty))
    sequence_means = [e["blocks_mean"] for e in per_sequence.values() if not math.isnan(e["blocks_mean"])]
    pooled["sequence_blocks_mean_min"] = min(sequence_means, default=float("nan"))
    pooled["sequence_blocks_mean_max"] = max(sequence_means, default=float("nan"))
    pooled["sequences"] = per_sequence
    return pooled


def reached_block_counts(blocks_means: Iterable[float], n_enf: int, num_blocks: int) -> list[int]:
    """The block counts a sweep reaches: its mean executed blocks rounded half up, within n_enf..N."""
    reached = {int(math.floor(m + 0.5)) for m in blocks_means if not math.isnan(m)}
    return sorted({min(max(k, n_enf), num_blocks) for k in reached})


def static_patterns(
    num_blocks: int, n_enf: int, blocks: int, limit: int, rng: np.random.Generator
) -> tuple[list[tuple[bool, ...]], int]:
    """Patterns running ``blocks`` blocks, the first ``n_enf`` always among them: all of them when
    there are at most ``limit``, else ``limit`` distinct ones drawn with ``rng``. Also returns how
    many such patterns exist."""
    optional, chosen = num_blocks - n_enf, blocks - n_enf
    if not 0 <= chosen <= optional:
        raise ValueError(f"{blocks} blocks is outside {n_enf}..{num_blocks} (enforced .. all)")
    total = math.comb(optional, chosen)
    if total <= limit:
        combos = list(itertools.combinations(range(optional), chosen))
    else:
        picked: set[tuple[int, ...]] = set()
        while len(picked) < limit:
            picked.add(tuple(sorted(int(i) for i in rng.choice(optional, chosen, replace=False))))
        combos = sorted(picked)
    return [tuple([True] * n_enf + [i in combo for i in range(optional)]) for combo in combos], total


def parse_thresholds(text: str) -> list[float]:
    """``"0.3,0.5"`` -> sorted distinct thresholds in [0, 1]; ValueError otherwise."""
    try:
        values = sorted({float(v) for v in text.split(",") if v.strip()})
    except ValueError as exc:
        raise ValueError(f"sweep thresholds must be comma-separated numbers, got {text!r}") from exc
    if not values or not all(0.0 <= v <= 1.0 for v in values):
        raise ValueError(f"sweep thresholds must be numbers in [0, 1], got {text!r}")
    return values


def json_ready(value):
    """Nested dicts/lists with NaN replaced by None (JSON has no NaN)."""
    if isinstance(value, dict):
        return {k: json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    return None if isinstance(value, float) and math.isnan(value) else value


# ----------------------------------------------------------------- passes over the sequences
def run_pass(tracker: Tracker, sequences, load_frame: LoadFrame) -> dict[str, SequenceResult]:
    """The tracker over every sequence with its current switches; nothing is written."""
    runner = ABTrackRunner(tracker)
    return {seq.name: run_sequence(runner, seq, load_frame) for seq in sequences}


def run_no_bdm_pass(tracker: Tracker, sequences, load_frame: LoadFrame) -> dict[str, SequenceResult]:
    """The same model with bypass off (as ``--no-bdm`` runs it); the switch is restored after."""
    model = tracker.model
    before = model.bdm_enabled
    model.bdm_enabled = False
    try:
        return run_pass(tracker, sequences, load_frame)
    finally:
        model.bdm_enabled = before


def _scored_pass(tracker: Tracker, sequences, load_frame: LoadFrame) -> dict:
    results = run_pass(tracker, sequences, load_frame)
    overall = score_tracker(OURS, results, sequences).overall
    return {"auc": overall["auc"], "blocks_executed_mean": overall["blocks_executed_mean"]}


def bypass_sweep(
    tracker: Tracker,
    sequences,
    load_frame: LoadFrame,
    thresholds: Iterable[float] = DEFAULT_SWEEP_THRESHOLDS,
    max_patterns: int = DEFAULT_MAX_STATIC_PATTERNS,
    seed: int = SWEEP_SEED,
    log: Callable[[str], None] = print,
) -> dict:
    """AUC and mean executed blocks per bypass threshold, and the AUC of static patterns (BDMs on,
    their decisions overridden) running each block count the sweep reaches."""
    model = tracker.model
    before = model.bypass_threshold
    adaptive = []
    try:
        for threshold in thresholds:
            model.bypass_threshold = threshold
            adaptive.append({"threshold": float(threshold), **_scored_pass(tracker, sequences, load_frame)})
            log(f"[sweep] threshold {threshold:.2f}: AUC {adaptive[-1]['auc']:.3f}, "
                f"blocks {adaptive[-1]['blocks_executed_mean']:.2f}")
    finally:
        model.bypass_threshold = before
    static, forced_before = [], model.forced_pattern
    counts = reached_block_counts([p["blocks_executed_mean"] for p in adaptive], model.n_enf, model.num_blocks)
    try:
        for blocks in counts:
            # One generator per count: the sample for a count does not depend on the other counts.
            rng = np.random.default_rng([seed, blocks])
            patterns, total = static_patterns(model.num_blocks, model.n_enf, blocks, max_patterns, rng)
            runs = []
            for pattern in patterns:
                model.set_forced_pattern(list(pattern))
                auc = _scored_pass(tracker, sequences, load_frame)["auc"]
                runs.append({"pattern": pattern_key(pattern), "auc": auc})
            aucs = [r["auc"] for r in runs]
            static.append({"blocks": blocks, "patterns_total": total, "patterns_run": len(runs),
                           "auc_mean": float(np.nanmean(aucs)), "auc_min": float(np.nanmin(aucs)),
                           "auc_max": float(np.nanmax(aucs)), "runs": runs})
            log(f"[sweep] {blocks} blocks, {len(runs)} of {total} static patterns: AUC mean "
                f"{static[-1]['auc_mean']:.3f} [{static[-1]['auc_min']:.3f}, {static[-1]['auc_max']:.3f}]")
    finally:
        model.set_forced_pattern(forced_before)
    return {"seed": seed, "max_static_patterns": max_patterns, "adaptive": adaptive, "static": static}


def evaluate_adaptivity(
    tracker: Tracker,
    sequences,
    results: dict[str, SequenceResult],
    load_frame: LoadFrame,
    difficulty_pass: bool = True,
    sweep_thresholds: Optional[list[float]] = None,
    max_patterns: int = DEFAULT_MAX_STATIC_PATTERNS,
    out_dir: Optional[Path] = None,
) -> dict:
    """The ``adaptivity`` section of metrics.json (JSON-ready) for ``results`` of a run with BDMs
    on; ``sweep_thresholds`` adds the (expensive) sweep and writes its plot into ``out_dir``."""
    no_bdm = run_no_bdm_pass(tracker, sequences, load_frame) if difficulty_pass else None
    # full_depth_below > 0: steps after a doubtful one ran every block whatever the BDMs said
    section = {"tracker": OURS, "bypass_threshold": float(tracker.model.bypass_threshold),
               "full_depth_below": float(tracker.cfg.full_depth_below),
               **measure_adaptivity(results, sequences, no_bdm)}
    if no_bdm is not None:  # the same pass scored: what bypass costs in accuracy
        section["auc_bypass_on"] = score_tracker(OURS, results, sequences).overall["auc"]
        section["auc_bypass_off"] = score_tracker(OURS, no_bdm, sequences).overall["auc"]
    if sweep_thresholds:
        sweep = bypass_sweep(tracker, sequences, load_frame, sweep_thresholds, max_patterns)
        if out_dir is not None:
            sweep["plot"] = plot_bypass_sweep(sweep, Path(out_dir) / SWEEP_PLOT).name
        section["bypass_sweep"] = sweep
    return json_ready(section)


# ----------------------------------------------------------------- plot and report
def plot_bypass_sweep(sweep: dict, path: Path) -> Path:
    """AUC against mean executed blocks: the threshold sweep as a line, static patterns as dots
    (one per pattern) with their mean per block count."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    adaptive = sweep["adaptive"]
    ax.plot([p["blocks_executed_mean"] for p in adaptive], [p["auc"] for p in adaptive], "o-",
            color="tab:blue", label="adaptive (bypass threshold)")
    labels: dict[tuple, list[str]] = {}  # thresholds that land on one point share one label
    for p in adaptive:
        labels.setdefault((p["blocks_executed_mean"], p["auc"]), []).append(f"{p['threshold']:.2f}")
    for point, names in labels.items():
        ax.annotate(", ".join(names), point, fontsize=7, textcoords="offset points", xytext=(3, 4))
    static = sweep["static"]
    if static:
        dots = [(s["blocks"], r["auc"]) for s in static for r in s["runs"]]
        ax.scatter(*zip(*dots), s=10, color="grey", alpha=0.5, label="static pattern")
        ax.plot([s["blocks"] for s in static], [s["auc_mean"] for s in static], "s--", color="tab:orange",
                label="static, mean per block count")
    ax.set(xlabel="mean executed blocks", ylabel="success AUC", title="Bypass threshold sweep vs static patterns")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def _fmt(value, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _spearman_cell(section: dict) -> str:
    if "difficulty_frames" not in section:
        return "not computed (--no-difficulty-pass)"
    rho = section["difficulty_spearman"]
    value = "undefined (blocks or difficulty constant, or < 2 frames)" if rho is None else f"{rho:.3f}"
    return f"{value}, {section['difficulty_frames']} frames"


def report_lines(section: dict) -> list[str]:
    """Markdown tables of the adaptivity section (the JSON-ready dict)."""
    rows = [
        ("tracking steps", section["frames"]),
        ("distinct patterns", section["patterns"]),
        ("most common pattern (share)", f"`{section['top_pattern']}` ({_fmt(section['top_pattern_share'])})"),
        (f"patterns on >= {MIN_PATTERN_SHARE:.0%} of frames", section["patterns_at_least_5pct"]),
        ("pattern entropy (bits)", _fmt(section["pattern_entropy_bits"])),
        ("blocks per frame: mean / std", f"{_fmt(section['blocks_mean'], 2)} / {_fmt(section['blocks_std'], 2)}"),
        ("per-sequence mean blocks: min / max",
         f"{_fmt(section['sequence_blocks_mean_min'], 2)} / {_fmt(section['sequence_blocks_mean_max'], 2)}"),
        ("Spearman(blocks, 1 - IoU without bypass)", _spearman_cell(section)),
    ]
    if "auc_bypass_off" in section:
        rows.append(("success AUC: bypass on / off (same model)",
                     f"{_fmt(section['auc_bypass_on'])} / {_fmt(section['auc_bypass_off'])}"))
    depth_rule = (f", every block after a step with confidence below {section['full_depth_below']:.2f}"
                  if section["full_depth_below"] > 0 else "")
    lines = ["", f"## Adaptivity ({section['tracker']}, bypass threshold {section['bypass_threshold']:.2f}{depth_rule})", "",
             "| measure | value |", "|---|---|"] + [f"| {name} | {value} |" for name, value in rows]
    sweep = section.get("bypass_sweep")
    if sweep:
        lines += ["", "### Bypass threshold sweep", "", "| threshold | blocks | AUC |", "|---|---|---|"]
        lines += [f"| {p['threshold']:.2f} | {_fmt(p['blocks_executed_mean'], 2)} | {_fmt(p['auc'])} |"
                  for p in sweep["adaptive"]]
        lines += ["", "| static blocks | patterns run (of) | AUC mean | AUC min | AUC max |", "|---|---|---|---|---|"]
        lines += [f"| {s['blocks']} | {s['patterns_run']} ({s['patterns_total']}) | {_fmt(s['auc_mean'])} | "
                  f"{_fmt(s['auc_min'])} | {_fmt(s['auc_max'])} |" for s in sweep["static"]]
    return lines + [""]
