"""Standard one-pass-evaluation metrics as pure functions.

Conventions (those of the OTB / LaSOT / GOT-10k toolkits; where they differ, the choice is named):
- A frame is scored only when its ground truth is valid: finite, positive width and height and,
  where the dataset says so, the target visible. The init frame (the first valid one, where the
  tracker is initialised) is never scored: its box is given, not predicted. This is the GOT-10k
  toolkit's rule; the OTB/LaSOT toolkits score it as a perfect frame, which raises their numbers
  slightly on short sequences.
- A prediction that is missing (NaN) on a scored frame counts as a failure: IoU 0, infinite
  centre distance.
- Success at threshold t counts frames with IoU > t (strictly, as the toolkits do), for the 21
  thresholds 0, 0.05, ..., 1. AUC is the mean of the 21 success rates, so a perfect tracker
  (IoU = 1 everywhere) scores 20/21 = 0.952, exactly as in the OTB/LaSOT toolkits.
- Precision counts centre distances <= 20 px. Normalised precision divides the x and y centre
  offsets by the ground-truth width and height and counts distances <= 0.2 (``norm_precision``);
  ``norm_precision_auc`` is the mean rate over the thresholds 0, 0.01, ..., 0.5 (the
  LaSOT/TrackingNet curve).
- GOT-10k: AO is the mean IoU of the scored frames, SR0.5 / SR0.75 the fraction with IoU > 0.5 / 0.75.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from abtrack_ros.tracking.geometry import iou_xywh

SUCCESS_THRESHOLDS = np.linspace(0.0, 1.0, 21)
PRECISION_THRESHOLDS_PX = np.arange(0, 51, dtype=np.float64)
NORM_PRECISION_THRESHOLDS = np.linspace(0.0, 0.5, 51)
PRECISION_AT_PX = 20.0
NORM_PRECISION_AT = 0.2
SR_LOW, SR_HIGH = 0.5, 0.75


def valid_gt_mask(gt_boxes: np.ndarray, visible: np.ndarray | None = None, skip_first: bool = True) -> np.ndarray:
    """Frames that are scored: valid ground truth (finite, positive size, visible), minus the init frame.

    The init frame is the first frame with a valid box (the one the OPE runner initialises on).
    """
    gt = np.asarray(gt_boxes, dtype=np.float64)
    mask = np.isfinite(gt).all(axis=1) & (np.nan_to_num(gt[:, 2]) > 0) & (np.nan_to_num(gt[:, 3]) > 0)
    if visible is not None:
        mask &= np.asarray(visible, dtype=bool)
    if skip_first and mask.any():
        mask[int(np.argmax(mask))] = False
    return mask


def frame_ious(pred_boxes: np.ndarray, gt_boxes: np.ndarray) -> np.ndarray:
    """Per-frame IoU; a missing prediction gives 0 (NaN only where the ground truth is missing)."""
    pred = np.asarray(pred_boxes, dtype=np.float64)
    gt = np.asarray(gt_boxes, dtype=np.float64)
    ious = iou_xywh(pred, gt)
    pred_missing = np.isnan(pred).any(axis=1) & np.isfinite(gt).all(axis=1)
    ious[pred_missing] = 0.0
    return ious


def center_errors(pred_boxes: np.ndarray, gt_boxes: np.ndarray, normalise: bool = False) -> np.ndarray:
    """Per-frame distance between box centres (px, or in units of the gt size); missing prediction = inf."""
    pred = np.asarray(pred_boxes, dtype=np.float64)
    gt = np.asarray(gt_boxes, dtype=np.float64)
    offset = (pred[:, :2] + pred[:, 2:] / 2.0) - (gt[:, :2] + gt[:, 2:] / 2.0)
    if normalise:
        with np.errstate(invalid="ignore", divide="ignore"):
            offset = offset / gt[:, 2:]
    errors = np.sqrt((offset**2).sum(axis=1))
    errors[np.isnan(pred).any(axis=1)] = np.inf
    return errors


def success_curve(ious: np.ndarray) -> np.ndarray:
    """Success rate (IoU > t) for each of :data:`SUCCESS_THRESHOLDS`; empty input gives NaNs."""
    ious = np.asarray(ious, dtype=np.float64)
    if ious.size == 0:
        return np.full(len(SUCCESS_THRESHOLDS), np.nan)
    return (ious[None, :] > SUCCESS_THRESHOLDS[:, None]).mean(axis=1)


def rate_within(errors: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Fraction of errors <= each threshold (precision curves); empty input gives NaNs."""
    errors = np.asarray(errors, dtype=np.float64)
    if errors.size == 0:
        return np.full(len(thresholds), np.nan)
    return (errors[None, :] <= np.asarray(thresholds)[:, None]).mean(axis=1)


@dataclass
class SequenceScores:
    """Scored-frame arrays of one sequence, and its metrics."""

    ious: np.ndarray
    center_err: np.ndarray
    norm_center_err: np.ndarray

    @classmethod
    def compute(
        cls, pred_boxes: np.ndarray, gt_boxes: np.ndarray, visible: np.ndarray | None = None
    ) -> "SequenceScores":
        pred = np.asarray(pred_boxes, dtype=np.float64)
        gt = np.asarray(gt_boxes, dtype=np.float64)
        if pred.shape != gt.shape or pred.ndim != 2 or pred.shape[1] != 4:
            raise ValueError(f"predictions {pred.shape} and ground truth {gt.shape} must both be (N, 4)")
        mask = valid_gt_mask(gt, visible)
        return cls(
            ious=frame_ious(pred[mask], gt[mask]),
            center_err=center_errors(pred[mask], gt[mask]),
            norm_center_err=center_errors(pred[mask], gt[mask], normalise=True),
        )

    @classmethod
    def concatenate(cls, parts: list["SequenceScores"]) -> "SequenceScores":
        """All frames of several sequences together (for frame-weighted overall curves)."""
        return cls(
            ious=np.concatenate([p.ious for p in parts]) if parts else np.zeros(0),
            center_err=np.concatenate([p.center_err for p in parts]) if parts else np.zeros(0),
            norm_center_err=np.concatenate([p.norm_center_err for p in parts]) if parts else np.zeros(0),
        )

    @property
    def num_frames(self) -> int:
        return int(self.ious.size)

    def success(self) -> np.ndarray:
        return success_curve(self.ious)

    def precision(self) -> np.ndarray:
        return rate_within(self.center_err, PRECISION_THRESHOLDS_PX)

    def norm_precision(self) -> np.ndarray:
        return rate_within(self.norm_center_err, NORM_PRECISION_THRESHOLDS)

    def summary(self) -> dict[str, float]:
        """auc, precision (@20 px), norm_precision (@0.2), norm_precision_auc, ao, sr50, sr75."""
        empty = self.ious.size == 0
        return {
            "auc": float(np.mean(self.success())),
            "precision": float(rate_within(self.center_err, np.array([PRECISION_AT_PX]))[0]),
            "norm_precision": float(rate_within(self.norm_center_err, np.array([NORM_PRECISION_AT]))[0]),
            "norm_precision_auc": float(np.mean(self.norm_precision())),
            "ao": float("nan") if empty else float(np.mean(self.ious)),
            "sr50": float("nan") if empty else float(np.mean(self.ious > SR_LOW)),
            "sr75": float("nan") if empty else float(np.mean(self.ious > SR_HIGH)),
            "frames_scored": self.num_frames,
        }


def fps(num_frames: int, total_seconds: float) -> float:
    """Frames per second; NaN when no time was measured."""
    return float(num_frames / total_seconds) if total_seconds > 0 else float("nan")


SEQUENCE_AVERAGED = ("auc", "precision", "norm_precision", "norm_precision_auc")
FRAME_AVERAGED = ("ao", "sr50", "sr75")


def overall_summary(parts: list[SequenceScores]) -> dict[str, float]:
    """Dataset-level metrics with each toolkit's weighting.

    OTB/LaSOT/TrackingNet curves (auc, precision, norm_precision) are averaged over sequences;
    GOT-10k AO/SR pool all scored frames of all sequences. Sequences without a scored frame are left out.
    """
    scored = [p for p in parts if p.num_frames > 0]
    summaries = [p.summary() for p in scored]
    result: dict[str, float] = {
        key: float(np.mean([s[key] for s in summaries])) if summaries else float("nan") for key in SEQUENCE_AVERAGED
    }
    pooled = SequenceScores.concatenate(scored).summary()
    result.update({key: pooled[key] for key in FRAME_AVERAGED})
    result["frames_scored"] = pooled["frames_scored"]
    return result
