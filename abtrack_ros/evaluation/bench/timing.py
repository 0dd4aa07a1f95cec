"""Timing in interleaved rounds, and the statistics that say whether a comparison holds still.

On a shared machine the load drifts while a benchmark runs. Timing one configuration after the
other lets that drift decide a comparison; timing them in rounds, every configuration once per
round in a seeded shuffled order, makes the drift hit all of them alike, and the per-round ratios
show how far a ratio can be trusted.
"""
from __future__ import annotations

import random
import statistics
import time
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import torch

# A ratio whose per-round interquartile range exceeds this share of its median is too noisy to
# conclude from (a 10 % wide IQR cannot tell a 5 % gain from none).
SPREAD_LIMIT = 0.10
QUARTILES = (25.0, 50.0, 75.0)


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

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()

    def sample_ms(self, fn: Callable[[], object]) -> float:
        self.sync()
        start = time.perf_counter()
        fn()
        self.sync()
        return 1000.0 * (time.perf_counter() - start)


@dataclass
class Job:
    """One thing to time: ``run`` is timed; ``before`` (optional) runs untimed before each call."""

    name: str
    run: Callable[[], object]
    before: Optional[Callable[[], None]] = None

    def call(self, watch: Stopwatch) -> float:
        if self.before is not None:
            self.before()
        return watch.sample_ms(self.run)


@dataclass
class Rounds:
    """The samples of one job, per round (ms)."""

    samples: list[list[float]]

    def round_medians(self) -> list[float]:
        return [statistics.median(r) for r in self.samples]

    def stats(self) -> TimingStats:
        """The median over the rounds' medians; min and max over every timed call."""
        every = [s for r in self.samples for s in r]
        return TimingStats(statistics.median(self.round_medians()), min(every), max(every))


def round_orders(count: int, rounds: int, seed: int) -> list[list[int]]:
    """The order of ``count`` jobs in each round: a fresh permutation per round, from ``seed``.

    Every round holds every job once; no job is always first (caches, clocks and the other jobs
    on the machine favour no position on average). Same arguments, same orders.
    """
    rng = random.Random(seed)
    return [rng.sample(range(count), count) for _ in range(rounds)]


def time_in_rounds(jobs: list[Job], rounds: int, per_round: int, warmup: int, watch: Stopwatch,
                   seed: int) -> dict[str, Rounds]:
    """Warm every job up, then ``rounds`` rounds: each job ``per_round`` times, in the round's order."""
    if rounds < 1 or per_round < 1:
        raise ValueError(f"rounds and iterations per round must be >= 1, got {rounds} and {per_round}")
    for job in jobs:
        for _ in range(warmup):
            job.call(watch)
    samples: list[list[list[float]]] = [[] for _ in jobs]
    for order in round_orders(len(jobs), rounds, seed):
        for index in order:
            samples[index].append([jobs[index].call(watch) for _ in range(per_round)])
    return {job.name: Rounds(s) for job, s in zip(jobs, samples)}


def per_round_ratios(numerator: list[float], denominator: list[float]) -> list[float]:
    """Round by round ``numerator / denominator`` (both one value per round, e.g. round medians)."""
    if len(numerator) != len(denominator):
        raise ValueError(f"{len(numerator)} numerator rounds but {len(denominator)} denominator rounds")
    return [n / d for n, d in zip(numerator, denominator)]


def spread(values: list[float], pivot: Optional[float] = None,
           relative_limit: Optional[float] = SPREAD_LIMIT) -> dict:
    """Median, min, max and quartiles of per-round values, and whether they allow a conclusion.

    Inconclusive when the interquartile range contains ``pivot`` (1.0 for "is A faster than B",
    a goal for "is the goal met": which side the value lies on depends on the round), or is wider
    than ``relative_limit`` of the median (None: no such limit, for small shares such as a 1 %
    overhead whose relative spread is large while it stays clearly on one side of its goal).
    """
    q1, median, q3 = (float(v) for v in np.percentile(values, QUARTILES))
    iqr_rel = (q3 - q1) / abs(median) if median else float("inf")
    reasons = []
    if pivot is not None and q1 < pivot < q3:
        reasons.append(f"IQR {q1:.3g}..{q3:.3g} straddles {pivot:g}")
    if relative_limit is not None and iqr_rel > relative_limit:
        reasons.append(f"IQR {q1:.3g}..{q3:.3g} is {100 * iqr_rel:.0f} % of the median {median:.3g} "
                       f"(> {100 * relative_limit:.0f} %)")
    return {"median": median, "min": float(min(values)), "max": float(max(values)), "q1": q1, "q3": q3,
            "iqr_rel": iqr_rel, "pivot": pivot, "rounds": len(values), "conclusive": not reasons,
            "why_inconclusive": "; ".join(reasons)}


def spread_warnings(spreads: dict[str, dict]) -> list[str]:
    """One line per inconclusive ratio (for the report and stderr)."""
    return [f"{name}: too noisy to conclude: {s['why_inconclusive']} over {s['rounds']} rounds "
            f"(min..max {s['min']:.3g}..{s['max']:.3g})" for name, s in spreads.items() if not s["conclusive"]]
