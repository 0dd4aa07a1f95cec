"""One-pass evaluation (OPE): run trackers over sequences, write results, score results folders."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Protocol

import numpy as np

from abtrack_ros.evaluation.failure import score_failures
from abtrack_ros.evaluation.metrics import SequenceScores, fps, frame_ious, overall_summary, valid_gt_mask
from abtrack_ros.evaluation.results import ResultsLayout, SequenceResult
from abtrack_ros.tracking.tracker import Tracker

OURS = "abtrack"


class SequenceTracker(Protocol):
    """What the runner needs from a tracker (ours or a peer)."""

    name: str

    def initialize(self, frame: np.ndarray, box_xywh: np.ndarray) -> None: ...

    def update(self, frame: np.ndarray) -> tuple[np.ndarray, Optional[list[bool]]]: ...

    def confidence(self) -> tuple[float, Optional[str]]:
        """Score (NaN: the tracker has none) and state (None: none) of the latest update."""
        ...

    def raw_score(self) -> float:
        """The model's raw peak score of the latest update (NaN: the tracker has none)."""
        ...


class ABTrackRunner:
    """Our Tracker behind the runner interface; also reports which blocks ran, its confidence
    (``TrackResult.confidence``, what a control loop should read, not the raw peak score) and state."""

    name = OURS

    def __init__(self, tracker: Tracker) -> None:
        self.tracker = tracker
        self._confidence: tuple[float, Optional[str]] = (float("nan"), None)
        self._raw_score = float("nan")

    def initialize(self, frame: np.ndarray, box_xywh: np.ndarray) -> None:
        self.tracker.initialize(frame, box_xywh)

    def update(self, frame: np.ndarray) -> tuple[np.ndarray, Optional[list[bool]]]:
        result = self.tracker.track(frame)
        self._confidence = (result.confidence, result.state)
        self._raw_score = result.score
        return result.box, result.executed

    def confidence(self) -> tuple[float, Optional[str]]:
        return self._confidence

    def raw_score(self) -> float:
        return self._raw_score


def run_sequence(tracker: SequenceTracker, sequence, load_frame: Callable[[Path], np.ndarray]) -> SequenceResult:
    """Track one sequence, initialised on its first frame with a valid (visible) box.

    Frames before the init frame get NaN boxes and no time. Times are per frame, in seconds,
    for the tracker call alone (frame decoding excluded).
    """
    n = len(sequence.frames)
    usable = valid_gt_mask(sequence.boxes, sequence.visible, skip_first=False)
    if not usable.any():
        raise ValueError(f"sequence {sequence.name!r} has no frame with a valid box to initialise on")
    start = int(np.argmax(usable))
    boxes = np.full((n, 4), np.nan)
    times = np.zeros(n)
    executed_rows: list[Optional[list[bool]]] = [None] * n
    scores = np.full(n, np.nan)
    raw_scores = np.full(n, np.nan)
    states = np.full(n, "", dtype=object)  # "" = no state (the init frame and before)

    frame = load_frame(sequence.frames[start])
    tic = time.perf_counter()
    tracker.initialize(frame, sequence.boxes[start])
    times[start] = time.perf_counter() - tic
    boxes[start] = sequence.boxes[start]
    for i in range(start + 1, n):
        frame = load_frame(sequence.frames[i])
        tic = time.perf_counter()
        boxes[i], executed_rows[i] = tracker.update(frame)
        times[i] = time.perf_counter() - tic
        scores[i], state = tracker.confidence()
        raw_scores[i] = tracker.raw_score()
        states[i] = state or ""

    executed = None
    widths = {len(r) for r in executed_rows if r is not None}
    if widths:
        width = widths.pop()
        executed = np.array([r if r is not None else [False] * width for r in executed_rows], dtype=bool)
    return SequenceResult(name=sequence.name, boxes=boxes, times=times, executed=executed,
                          scores=scores if np.isfinite(scores).any() else None,
                          states=states if (states != "").any() else None,
                          raw_scores=raw_scores if np.isfinite(raw_scores).any() else None)


@dataclass
class TrackerScores:
    """Per-sequence and overall metrics of one tracker."""

    name: str
    per_sequence: dict[str, dict[str, float]] = field(default_factory=dict)
    overall: dict[str, float] = field(default_factory=dict)
    # Kept for plots: per-sequence scored-frame arrays and per-frame IoU / executed blocks.
    scores: dict[str, SequenceScores] = field(default_factory=dict)
    frame_ious: dict[str, np.ndarray] = field(default_factory=dict)
    executed: dict[str, np.ndarray] = field(default_factory=dict)
    failure: dict[str, dict] = field(default_factory=dict)  # failure.score_failures: overall, sequences


def _tracked_frames(result: SequenceResult) -> np.ndarray:
    """Frames where the tracker was called (init frame included): the ones with a time."""
    return ~np.isnan(result.boxes).all(axis=1)


def score_tracker(name: str, results: dict[str, SequenceResult], sequences) -> TrackerScores:
    """Metrics for one tracker's results on the given sequences (all must have results)."""
    scores = TrackerScores(name=name)
    total_frames, total_time, block_counts = 0, 0.0, []
    for seq in sequences:
        result = results[seq.name]
        seq_scores = SequenceScores.compute(result.boxes, seq.boxes, seq.visible)
        tracked = _tracked_frames(result)
        seq_time = float(np.nansum(result.times[tracked]))
        entry = dict(seq_scores.summary())
        entry["fps"] = fps(int(tracked.sum()), seq_time)
        if result.executed is not None:
            # The init frame runs no block (only the template embedding): average over tracking steps.
            steps = tracked.copy()
            steps[int(np.argmax(tracked))] = False
            counts = result.executed[steps].sum(axis=1)
            entry["blocks_executed_mean"] = float(counts.mean()) if counts.size else float("nan")
            block_counts.append(counts)
            scores.executed[seq.name] = result.executed
        scores.per_sequence[seq.name] = entry
        scores.scores[seq.name] = seq_scores
        scores.frame_ious[seq.name] = frame_ious(result.boxes, seq.boxes)
        total_frames += int(tracked.sum())
        total_time += seq_time
    scores.overall = overall_summary(list(scores.scores.values()))
    scores.overall["fps"] = fps(total_frames, total_time)
    scores.overall["sequences"] = len(scores.per_sequence)
    if block_counts:
        pooled = np.concatenate(block_counts)
        scores.overall["blocks_executed_mean"] = float(pooled.mean()) if pooled.size else float("nan")
    scores.failure = score_failures(results, sequences)
    return scores


def run_tracker(
    tracker: SequenceTracker,
    sequences,
    results_root: Path,
    dataset_format: str,
    load_frame: Callable[[Path], np.ndarray],
    log: Callable[[str], None] = print,
) -> dict[str, SequenceResult]:
    """Run one tracker over all sequences and write its results folder ``results_root/<name>``."""
    layout = ResultsLayout(Path(results_root) / tracker.name, dataset_format)
    results = {}
    for index, seq in enumerate(sequences, start=1):
        results[seq.name] = run_sequence(tracker, seq, load_frame)
        layout.write(results[seq.name])
        log(f"[{tracker.name}] {index}/{len(sequences)} {seq.name}: {len(seq.frames)} frames")
    return results


def score_results_folder(
    results_root: Path, dataset_format: str, sequences, names: Optional[list[str]] = None
) -> list[TrackerScores]:
    """Score tracker folders under ``results_root`` (all, or ``names``; ``abtrack`` first) without running anything."""
    root = Path(results_root)
    if (root / "results").is_dir():  # an `abtrack eval --out` folder
        root = root / "results"
    if names is None:
        names = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    if not names:
        raise ValueError(f"no tracker result folders under {root}")
    names.sort(key=lambda n: (n != OURS, n))
    all_scores = []
    for name in names:
        layout = ResultsLayout(root / name, dataset_format)
        results = {seq.name: layout.read(seq.name, len(seq.frames)) for seq in sequences}
        all_scores.append(score_tracker(name, results, sequences))
    return all_scores
