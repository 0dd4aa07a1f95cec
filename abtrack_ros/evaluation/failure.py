"""Failure and re-acquisition: does the tracker's confidence (score, LOST state) see its failures?

Definitions (docs/tracking.md, section "Failure and re-acquisition"):
- Only tracking steps count: the frames after the init frame. A step is *truly lost* when the
  target is absent (not visible by the dataset's labels: absence, full occlusion, out of view, no
  valid box) or its IoU < FAIL_IOU; it is a *success* when the target is present and IoU >= SUCCESS_IOU.
- ``confidence_auroc``: the chance that the score of a random success step beats that of a random
  truly-lost step, ties counting half (the ROC area of the score separating the two; steps in
  between are left out): 1 = perfect, 0.5 = chance, 0 = inverted. ``raw_score_auroc``: the same for
  the model's raw peak score (what the confidence adds to it).
- ``lost_precision``: share of LOST steps that are truly lost; ``lost_recall``: share of truly-lost
  steps in state LOST.
- A *failure* is a maximal run of truly-lost steps, starting at its first step. Its detection delay
  is the number of steps from that start to the first LOST step of the run (0 = flagged at once);
  a run without a LOST step is *missed*.
- An *absence event* is a maximal run of absent steps after which the target is visible again (the
  return). It is *re-acquired* when some step among the return and the REACQUIRE_WINDOW - 1 steps
  after it (fewer at the sequence end) has the target present with IoU >= SUCCESS_IOU.
- A *re-acquisition* is a TRACKING step right after a LOST step; it is *false* when that step is
  truly lost. ``false_reacquisition_frames`` counts the truly-lost TRACKING steps of the TRACKING
  runs that begin with a re-acquisition (TRACKING with IoU < FAIL_IOU after having been LOST).
- A sequence without a present step (a test split annotated on the first frame only) is not scored.
  Overall numbers pool the steps, failures and events of all scored sequences.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from abtrack_ros.evaluation.metrics import frame_ious, valid_gt_mask
from abtrack_ros.evaluation.results import SequenceResult
from abtrack_ros.tracking.tracker import STATE_LOST, STATE_TRACKING

FAIL_IOU = 0.1
SUCCESS_IOU = 0.5
REACQUIRE_WINDOW = 30  # frames, the return frame included


# ----------------------------------------------------------------- pure per-step functions
def truly_lost(ious: np.ndarray, present: np.ndarray) -> np.ndarray:
    """Steps where the target is absent or the IoU is below FAIL_IOU (a missing IoU counts as 0)."""
    return ~np.asarray(present, dtype=bool) | (np.nan_to_num(np.asarray(ious, dtype=np.float64)) < FAIL_IOU)


def confidence_auroc(success_scores: np.ndarray, failure_scores: np.ndarray) -> float:
    """P(success score > failure score) + P(tie) / 2; NaN when a side is empty."""
    success = np.asarray(success_scores, dtype=np.float64)
    failure = np.sort(np.asarray(failure_scores, dtype=np.float64))
    if success.size == 0 or failure.size == 0:
        return float("nan")
    below = np.searchsorted(failure, success, side="left")
    ties = np.searchsorted(failure, success, side="right") - below
    return float((below + 0.5 * ties).sum() / (success.size * failure.size))


def true_runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """``(start, end)`` (end exclusive) of each maximal run of True values."""
    padded = np.concatenate([[False], np.asarray(mask, dtype=bool), [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True))


def detection_delays(lost_true: np.ndarray, lost_state: np.ndarray) -> tuple[list[int], int]:
    """Delays (steps from a failure's start to its first LOST step) of the flagged failures, and
    the number of failures never flagged."""
    lost_state = np.asarray(lost_state, dtype=bool)
    delays, missed = [], 0
    for start, end in true_runs(lost_true):
        flagged = np.flatnonzero(lost_state[start:end])
        if flagged.size:
            delays.append(int(flagged[0]))
        else:
            missed += 1
    return delays, missed


def reacquisitions(present: np.ndarray, ious: np.ndarray, window: int = REACQUIRE_WINDOW) -> tuple[int, int]:
    """(absence events, events re-acquired within ``window`` frames of the target's return)."""
    present = np.asarray(present, dtype=bool)
    found = present & (np.nan_to_num(np.asarray(ious, dtype=np.float64)) >= SUCCESS_IOU)
    events = [end for _start, end in true_runs(~present) if end < len(present)]  # the return frames
    return len(events), sum(bool(found[back : back + window].any()) for back in events)


def false_reacquisitions(states: np.ndarray, lost_true: np.ndarray) -> tuple[int, int, int]:
    """(re-acquisitions, false re-acquisitions, truly-lost TRACKING steps after having been LOST)."""
    states = np.asarray(states)
    lost_true = np.asarray(lost_true, dtype=bool)
    claims, false_claims, false_frames = 0, 0, 0
    for start, end in true_runs(states == STATE_TRACKING):
        if start == 0 or states[start - 1] != STATE_LOST:
            continue  # not a re-acquisition (the first run, or after a step without a state)
        claims += 1
        false_claims += int(lost_true[start])
        false_frames += int(lost_true[start:end].sum())
    return claims, false_claims, false_frames


# ----------------------------------------------------------------- per sequence and pooled
@dataclass
class FailureCounts:
    """What the failure metrics of one sequence (or several, pooled) are computed from."""

    success_scores: np.ndarray  # scores of success steps that have one
    failure_scores: np.ndarray  # scores of truly-lost steps that have one
    success_raw: np.ndarray  # the same for the model's raw peak score
    failure_raw: np.ndarray
    lost_frames: int
    success_frames: int
    failures: int
    absence_events: int
    reacquired: int
    has_states: bool = False  # the counts below are meaningful only with states
    lost_tp: int = 0
    lost_fp: int = 0
    lost_fn: int = 0
    delays: list[int] = field(default_factory=list)
    missed: int = 0
    reacq_claims: int = 0
    false_reacq_claims: int = 0
    false_reacq_frames: int = 0

    @classmethod
    def compute(cls, ious: np.ndarray, present: np.ndarray, scores: np.ndarray | None,
                states: np.ndarray | None, raw_scores: np.ndarray | None = None) -> "FailureCounts":
        """From per-step arrays of one sequence; ``scores`` / ``raw_scores`` NaN and ``states`` ""
        where the tracker gave none."""
        present = np.asarray(present, dtype=bool)
        lost = truly_lost(ious, present)
        success = present & (np.nan_to_num(np.asarray(ious, dtype=np.float64)) >= SUCCESS_IOU)
        scores = np.full(len(lost), np.nan) if scores is None else np.asarray(scores, dtype=np.float64)
        raw = np.full(len(lost), np.nan) if raw_scores is None else np.asarray(raw_scores, dtype=np.float64)
        scored, raw_scored = np.isfinite(scores), np.isfinite(raw)
        events, reacquired = reacquisitions(present, ious)
        counts = cls(
            success_scores=scores[success & scored], failure_scores=scores[lost & scored],
            success_raw=raw[success & raw_scored], failure_raw=raw[lost & raw_scored],
            lost_frames=int(lost.sum()), success_frames=int(success.sum()), failures=len(true_runs(lost)),
            absence_events=events, reacquired=reacquired,
        )
        states = np.asarray(states) if states is not None else np.full(len(lost), "")
        flagged = states == STATE_LOST
        if not (flagged | (states == STATE_TRACKING)).any():
            return counts
        counts.has_states = True
        counts.lost_tp, counts.lost_fp = int((flagged & lost).sum()), int((flagged & ~lost).sum())
        counts.lost_fn = int((~flagged & lost).sum())
        counts.delays, counts.missed = detection_delays(lost, flagged)
        counts.reacq_claims, counts.false_reacq_claims, counts.false_reacq_frames = false_reacquisitions(states, lost)
        return counts

    @classmethod
    def pool(cls, parts: list["FailureCounts"]) -> "FailureCounts":
        """Several sequences as one: steps, failures and events added up."""
        def total(name: str) -> int:
            return sum(getattr(p, name) for p in parts)

        def joined(name: str) -> np.ndarray:
            return np.concatenate([getattr(p, name) for p in parts]) if parts else np.zeros(0)

        return cls(
            success_scores=joined("success_scores"), failure_scores=joined("failure_scores"),
            success_raw=joined("success_raw"), failure_raw=joined("failure_raw"),
            lost_frames=total("lost_frames"), success_frames=total("success_frames"), failures=total("failures"),
            absence_events=total("absence_events"), reacquired=total("reacquired"),
            has_states=any(p.has_states for p in parts), lost_tp=total("lost_tp"), lost_fp=total("lost_fp"),
            lost_fn=total("lost_fn"), delays=[d for p in parts for d in p.delays], missed=total("missed"),
            reacq_claims=total("reacq_claims"), false_reacq_claims=total("false_reacq_claims"),
            false_reacq_frames=total("false_reacq_frames"),
        )

    def summary(self) -> dict[str, float | int | None]:
        """The metrics (JSON-ready: None where undefined or where the tracker gave no state)."""
        states = self.has_states
        entry = {
            "confidence_auroc": confidence_auroc(self.success_scores, self.failure_scores),
            "raw_score_auroc": confidence_auroc(self.success_raw, self.failure_raw),
            "success_frames": self.success_frames,
            "lost_frames": self.lost_frames,
            "lost_precision": _ratio(self.lost_tp, self.lost_tp + self.lost_fp) if states else None,
            "lost_recall": _ratio(self.lost_tp, self.lost_tp + self.lost_fn) if states else None,
            "failures": self.failures,
            "failures_missed": self.missed if states else None,
            "detection_delay_median": float(np.median(self.delays)) if self.delays else None,
            "absence_events": self.absence_events,
            "reacquired": self.reacquired,
            "reacquired_share": _ratio(self.reacquired, self.absence_events),
            "reacquisitions": self.reacq_claims if states else None,
            "false_reacquisitions": self.false_reacq_claims if states else None,
            "false_reacquisition_frames": self.false_reacq_frames if states else None,
        }
        return {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in entry.items()}


def _ratio(part: int, whole: int) -> float:
    return part / whole if whole else float("nan")


def sequence_failures(result: SequenceResult, gt_boxes: np.ndarray, visible: np.ndarray) -> FailureCounts | None:
    """Failure counts of one tracker's result on one sequence; None when nothing can be scored."""
    usable = valid_gt_mask(gt_boxes, visible, skip_first=False)
    steps = np.arange(len(usable)) > int(np.argmax(usable))  # after the init frame, as the OPE runner
    if not (usable & steps).any():
        return None
    ious = frame_ious(result.boxes, gt_boxes)[steps]
    scores = None if result.scores is None else result.scores[steps]
    states = None if result.states is None else result.states[steps]
    raw = None if result.raw_scores is None else result.raw_scores[steps]
    return FailureCounts.compute(ious, usable[steps], scores, states, raw)


def score_failures(results: dict[str, SequenceResult], sequences) -> dict[str, dict]:
    """``{"overall": metrics, "sequences": {name: metrics}}`` of one tracker (unscorable sequences left out)."""
    parts = {seq.name: sequence_failures(results[seq.name], seq.boxes, seq.visible) for seq in sequences}
    parts = {name: counts for name, counts in parts.items() if counts is not None}
    return {
        "overall": FailureCounts.pool(list(parts.values())).summary(),
        "sequences": {name: counts.summary() for name, counts in parts.items()},
    }


# ----------------------------------------------------------------- metrics.json and report.md
def failure_section(all_scores) -> dict:
    """The ``failure`` section of metrics.json: the thresholds and, per tracker, its metrics."""
    return {
        "fail_iou": FAIL_IOU,
        "success_iou": SUCCESS_IOU,
        "reacquire_window": REACQUIRE_WINDOW,
        "trackers": {s.name: s.failure for s in all_scores},
    }


def _cell(value, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def report_lines(all_scores) -> list[str]:
    """The report.md section: one row per tracker, pooled over the sequences."""
    lines = [
        "## Failure and re-acquisition", "",
        "| tracker | AUROC | AUROC (raw score) | LOST precision | LOST recall | failures | missed | delay (median) "
        f"| absence events | re-acquired in {REACQUIRE_WINDOW} | false re-acq. (steps) |",
        "|---" * 11 + "|",
    ]
    for s in all_scores:
        o = s.failure["overall"]
        false_reacq = (f"{o['false_reacquisitions']}/{o['reacquisitions']} ({o['false_reacquisition_frames']})"
                       if o["reacquisitions"] is not None else "n/a")
        lines.append(
            f"| {s.name} | {_cell(o['confidence_auroc'])} | {_cell(o['raw_score_auroc'])} "
            f"| {_cell(o['lost_precision'])} | {_cell(o['lost_recall'])} "
            f"| {o['failures']} | {_cell(o['failures_missed'])} | {_cell(o['detection_delay_median'], 1)} "
            f"| {o['absence_events']} | {o['reacquired']} ({_cell(o['reacquired_share'], 2)}) | {false_reacq} |"
        )
    lines += [
        "",
        f"A step is truly lost when the target is absent or IoU < {FAIL_IOU}, a success when IoU >= {SUCCESS_IOU}. "
        "AUROC: the confidence separating success from truly-lost steps (n/a: no score); AUROC (raw score): the "
        "same for the model's raw peak score. LOST precision / recall: the "
        "LOST state against truly lost. Failures: runs of truly-lost steps; missed: never in state LOST; delay: "
        f"steps from a failure's start to its first LOST. Re-acquired: IoU >= {SUCCESS_IOU} within "
        f"{REACQUIRE_WINDOW} frames of the target's return. False re-acq.: re-acquisitions (LOST -> TRACKING) on a "
        "truly-lost step / all re-acquisitions (truly-lost TRACKING steps after having been LOST). n/a: the tracker "
        "reports no such value. Definitions: docs/tracking.md.",
        "",
    ]
    return lines
