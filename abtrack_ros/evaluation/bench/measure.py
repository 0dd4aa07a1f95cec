"""The bench's measurements: configurations, cost curve, single blocks and the head, each set of
things to compare timed together in interleaved rounds (timing.py)."""
from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import torch

from abtrack_ros.model.head import FusedCenterPredictor
from abtrack_ros.tracking.tracker import Tracker

from .subjects import BenchSequence
from .timing import Job, Rounds, Stopwatch, per_round_ratios, spread, time_in_rounds

ORDER_SEED = 0  # seed of the rounds' shuffled orders: the same order every run


@dataclass
class BenchSettings:
    iterations: int = 100  # timed calls per job, split evenly over the rounds
    warmup: int = 10
    rounds: int = 20
    num_frames: int = 30
    block_iterations: int = 200  # per single-block and head job
    accuracy_sequences: int = 4  # generated synthetic validation set of the backends' accuracy check
    accuracy_frames: int = 60

    @classmethod
    def quick(cls) -> "BenchSettings":
        return cls(iterations=5, warmup=1, rounds=5, num_frames=4, block_iterations=5, accuracy_sequences=1,
                   accuracy_frames=8)

    def per_round(self, total: int) -> int:
        return max(1, total // self.rounds)

    def time(self, jobs: list[Job], watch: Stopwatch, total: Optional[int] = None) -> dict[str, Rounds]:
        """``jobs`` in rounds; ``total`` timed calls per job (default ``iterations``)."""
        per_round = self.per_round(self.iterations if total is None else total)
        with torch.inference_mode():
            return time_in_rounds(jobs, self.rounds, per_round, self.warmup, watch, ORDER_SEED)


class ModelCursor:
    """The backend's forward on the sequence's search patches in turn (template embedded once)."""

    def __init__(self, tracker: Tracker, seq: BenchSequence) -> None:
        self.backend = tracker.backend
        with torch.inference_mode():
            self.tokens = self.backend.embed_template(tracker.normalise(seq.template_patch))
            self.searches = [tracker.normalise(p) for p in seq.search_patches]
        self.calls = 0
        self.executed: list[int] = []

    def run(self) -> None:
        out = self.backend.forward_embedded(self.tokens, self.searches[self.calls % len(self.searches)])
        self.calls += 1
        self.executed.append(int(out.executed[0].sum()))


class StepCursor:
    """Whole ``Tracker.track`` steps through the sequence; back to its first frame (untimed) at the end."""

    def __init__(self, tracker: Tracker, seq: BenchSequence) -> None:
        self.tracker = tracker
        self.seq = seq
        self.steps = len(seq.frames) - 1
        self.calls = 0
        self.stage_ms: list[dict[str, float]] = []

    def before(self) -> None:
        if self.calls % self.steps == 0:
            self.tracker.initialize(self.seq.frames[0], self.seq.boxes[0])

    def run(self) -> None:
        result = self.tracker.track(self.seq.frames[1 + self.calls % self.steps])
        self.calls += 1
        self.stage_ms.append(result.timings_ms)

    def stage_medians(self) -> dict[str, float]:
        return {stage: statistics.median(t[stage] for t in self.stage_ms) for stage in ("preprocess", "postprocess")}


def _row(prefix: str, rounds: Rounds) -> dict[str, float]:
    stats = rounds.stats()
    return {f"{prefix}_ms_median": stats.median_ms, f"{prefix}_ms_min": stats.min_ms, f"{prefix}_ms_max": stats.max_ms}


@dataclass
class ConfigTiming:
    """What ``time_configs`` measured."""

    configs: list[dict]  # the report's ``configs`` rows
    ratios: dict[str, dict]  # spreads of the per-round ratios to the first configuration
    stage_ms: dict[str, dict[str, float]]  # per configuration: median preprocess / postprocess of its steps
    step_fps_rounds: dict[str, list[float]]  # per configuration: 1000 / each round's median step time


def time_configs(trackers: dict[str, Tracker], seq: BenchSequence, watch: Stopwatch,
                 settings: BenchSettings) -> ConfigTiming:
    """Model forward and tracker step of every configuration, all interleaved."""
    models = {name: ModelCursor(t, seq) for name, t in trackers.items()}
    steps = {name: StepCursor(t, seq) for name, t in trackers.items()}
    jobs = [job for name in trackers for job in (Job(f"model:{name}", models[name].run),
                                                  Job(f"step:{name}", steps[name].run, steps[name].before))]
    timed = settings.time(jobs, watch)
    configs = []
    for name in trackers:
        row = {"name": name, **_row("model", timed[f"model:{name}"]), **_row("step", timed[f"step:{name}"])}
        row["fps"] = 1000.0 / row["step_ms_median"]
        row["model_fps"] = 1000.0 / row["model_ms_median"]
        row["blocks_executed_mean"] = float(np.mean(models[name].executed))
        configs.append(row)
    reference, *others = list(trackers)
    ratios = {f"{kind}_{name}_vs_{reference}": spread(per_round_ratios(timed[f"{kind}:{name}"].round_medians(),
                                                                        timed[f"{kind}:{reference}"].round_medians()),
                                                       pivot=1.0)
              for name in others for kind in ("step", "model")}
    return ConfigTiming(configs, ratios, {name: cursor.stage_medians() for name, cursor in steps.items()},
                        {name: [1000.0 / t for t in timed[f"step:{name}"].round_medians()] for name in trackers})


def optional_patterns(num_blocks: int, n_enf: int) -> list[list[bool]]:
    """Forced patterns running the enforced blocks and the first k optional ones, k = 0..all."""
    return [[True] * (n_enf + k) + [False] * (num_blocks - n_enf - k) for k in range(num_blocks - n_enf + 1)]


def time_cost_curve(tracker: Tracker, seq: BenchSequence, watch: Stopwatch, settings: BenchSettings) -> list[dict]:
    """Model forward and tracker step with exactly k optional blocks forced to run, all k interleaved."""
    model = tracker.model
    patterns = optional_patterns(model.num_blocks, model.n_enf)
    forward, step = ModelCursor(tracker, seq), StepCursor(tracker, seq)

    def forced(k: int, run: Callable[[], None]) -> Callable[[], None]:
        def call() -> None:
            model.set_forced_pattern(patterns[k])
            run()
        return call

    jobs = [job for k in range(len(patterns)) for job in (Job(f"model:{k}", forced(k, forward.run)),
                                                           Job(f"step:{k}", forced(k, step.run), step.before))]
    try:
        timed = settings.time(jobs, watch)
    finally:
        model.set_forced_pattern(None)
    return [{"optional_blocks_run": k, "blocks_executed": sum(pattern),
             **_row("model", timed[f"model:{k}"]), **_row("step", timed[f"step:{k}"])}
            for k, pattern in enumerate(patterns)]


def time_blocks(trackers: dict[str, Tracker], seq: BenchSequence, watch: Stopwatch,
                settings: BenchSettings) -> tuple[dict[str, float], dict[str, list[float]]]:
    """Per optional block, interleaved: the block on [template | search], the same block with the
    bypass token appended, the BDM decision with its scalar compare, and the VTP-sliced block.

    Returns ``per_block_ms`` (block; block + decision on the longer sequence; pruned block +
    decision) and, per round, the goal quantities: the BDM overhead (token + decision) and the
    decision alone in % of the block, the token's share, and pruned / unpruned block.
    """
    bdm, pruned = trackers["bdm"].model.backbone, trackers["bdm_vtp"].model.backbone
    normalise = trackers["bdm"].normalise
    with torch.inference_mode():
        tokens = torch.cat([bdm.embed_template(normalise(seq.template_patch)),
                            bdm.embed_search(normalise(seq.search_patches[0]))], dim=1)
        with_bypass = torch.cat([tokens, bdm.bypass_token.expand(1, -1, -1)], dim=1)
    optional = range(bdm.n_enf, bdm.num_blocks)
    jobs = []
    for index in optional:
        block, decision = bdm.blocks[index], bdm.decisions[index - bdm.n_enf]
        jobs += [Job(f"plain:{index}", lambda block=block: block(tokens)),
                 Job(f"token:{index}", lambda block=block: block(with_bypass)),
                 Job(f"decision:{index}",
                     lambda decision=decision: float(decision(with_bypass)) > bdm.bypass_threshold),
                 Job(f"pruned:{index}", lambda index=index: pruned.blocks[index](with_bypass))]
    timed = settings.time(jobs, watch, settings.block_iterations)
    # per round: the mean over the optional blocks of each kind's round median
    mean = {kind: np.mean([timed[f"{kind}:{i}"].round_medians() for i in optional], axis=0)
            for kind in ("plain", "token", "decision", "pruned")}
    per_round = {"bdm_overhead_pct": 100.0 * ((mean["token"] + mean["decision"]) / mean["plain"] - 1.0),
                 "bdm_decision_pct": 100.0 * mean["decision"] / mean["plain"],
                 "bypass_token_pct": 100.0 * (mean["token"] / mean["plain"] - 1.0),
                 "pruned_block_ratio": mean["pruned"] / mean["token"]}
    per_block = {"block": mean["plain"], "block_bdm": mean["token"] + mean["decision"],
                 "block_bdm_vtp": mean["pruned"] + mean["decision"]}
    return ({key: float(np.median(values)) for key, values in per_block.items()},
            {key: [float(v) for v in values] for key, values in per_round.items()})


def time_head(tracker: Tracker, seq: BenchSequence, watch: Stopwatch,
              settings: BenchSettings) -> tuple[dict[str, float], dict]:
    """The center head as the backends run it (BN folded, branches fused) and as the model holds
    it, interleaved on the same search features (and the quality head, for a model that has
    one); returns the times and the fused/unfused spread."""
    model = tracker.model
    fused = FusedCenterPredictor(model.head)
    with torch.inference_mode():
        tokens = model.embed_template(tracker.normalise(seq.template_patch))
        features = model.backbone(tokens, tracker.normalise(seq.search_patches[0])).search_map
    jobs = [Job("fused", lambda: fused(features)), Job("unfused", lambda: model.head(features))]
    if model.quality is not None:
        jobs.append(Job("quality", lambda: model.quality(features)))
    timed = settings.time(jobs, watch, settings.block_iterations)
    times = {"head_ms": timed["fused"].stats().median_ms, "head_unfused_ms": timed["unfused"].stats().median_ms}
    if model.quality is not None:
        times["quality_head_ms"] = timed["quality"].stats().median_ms
    return times, spread(per_round_ratios(timed["fused"].round_medians(), timed["unfused"].round_medians()), pivot=1.0)


def time_confidence(tracker: Tracker, seq: BenchSequence, watch: Stopwatch, settings: BenchSettings) -> float:
    """Median ms of one step's confidence (every cue of tracking/confidence.py and the logistic),
    on the model's score map for a real search patch and the bench frames' boxes: a part of the
    tracker's postprocess time."""
    from abtrack_ros.tracking import confidence as conf

    with torch.inference_mode():
        tokens = tracker.backend.embed_template(tracker.normalise(seq.template_patch))
        out = tracker.backend.forward_embedded(tokens, tracker.normalise(seq.search_patches[0]))
    score_map = out.score_map.float()[0, 0].cpu().numpy()
    peak = divmod(int(np.argmax(score_map)), score_map.shape[1])
    quality = None if out.quality_map is None else float(out.quality_map[0, 0, peak[0], peak[1]])
    radius = conf.cue_radius(score_map.shape[0], tracker.cfg.search_factor)
    template_histogram = conf.colour_histogram(seq.frames[0], seq.boxes[0])
    frame, box, previous = seq.frames[1], seq.boxes[1], seq.boxes[0]

    def step() -> None:
        cues = conf.step_cues(score_map, peak, radius, box, previous, frame, template_histogram, quality)
        conf.combine(cues, tracker.cfg.confidence)

    timed = settings.time([Job("confidence", step)], watch, settings.block_iterations)
    return timed["confidence"].stats().median_ms
