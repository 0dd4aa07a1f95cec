"""How far to trust a tracking step: cues from the score map and the track, one logistic confidence.

Every cue is computed from what the model outputs (the raw score map, the decoded box and, with a
quality head, the quality map) and the previous step's box. The cues (docs/tracking.md,
"Confidence, LOST state and re-acquisition"):
- ``peak_logit``: logit of the raw score at the chosen cell;
- ``sharpness``: the share of the map's total score within ``radius`` cells of the peak (a single
  sharp peak -> near 1, a flat map -> the near cells' share of the area);
- ``competitor``: the highest score farther than ``radius`` cells from the peak, over the peak's
  (a look-alike elsewhere in the search region -> near or above 1);
- ``jump``: the box centre's move since the previous step, in previous-box sizes;
- ``size_change``: ``|log|`` of the box's side change since the previous step (sqrt of the area ratio);
- ``appearance``: how well the colours inside the box match those of the target when it was
  initialised (Bhattacharyya coefficient of hue-saturation histograms, 0..1): a look-alike of
  another colour, or background clutter, scores low;
- ``quality_logit``: logit of the quality head's estimate of the box's IoU at the chosen cell
  (0, neutral, for a model without a quality head; its weight must then be 0).
``confidence = sigmoid(bias + sum(weight_cue * cue))`` with the weights of ``tracker.confidence``
(data in the config, fitted per model by ``benchmarks/fit_confidence.py``). With
``tracker.confidence_smoothing`` the tracker publishes the sigmoid of a moving average of that
logit over the track instead: a failure lasts, while one step's cues flicker.
"""
from __future__ import annotations

import dataclasses
import math

import cv2
import numpy as np

from abtrack_ros.config import ConfidenceWeights
from abtrack_ros.tracking import geometry as geo

CUE_NAMES = tuple(f.name for f in dataclasses.fields(ConfidenceWeights) if f.name != "bias")
# Scores are probabilities; clipping keeps the logit finite (the head clamps to the same range).
SCORE_FLOOR = 1e-4
# Caps keep one absurd cue (a peak elsewhere far above the chosen one, a box jumping across the
# image) from outweighing all others: beyond them a step is as doubtful as it gets.
COMPETITOR_CAP = 2.0
JUMP_CAP = 3.0
SIZE_CHANGE_CAP = 2.0
# A competitor cue at or above this (a second peak at least half as high as the chosen one) names
# a look-alike as the reason for a low confidence.
COMPETING_PEAK = 0.5
# A logit beyond this is confidence 0 or 1 in float64 anyway; clipping avoids overflow in exp.
LOGIT_CLIP = 50.0
# Colour histogram of a box: hue x saturation bins (OpenCV's 8-bit hue runs 0..180). Coarse bins
# keep it tolerant of lighting and blur; the inner part of the box leaves out most background.
HUE_BINS, SATURATION_BINS = 12, 4
HISTOGRAM_INNER_FRACTION = 0.8
# A box smaller than this (pixels a side, after taking the inner part) has too few pixels for a
# histogram: its appearance cue is neutral.
HISTOGRAM_MIN_SIDE = 4
NEUTRAL_APPEARANCE = 0.5


def cue_radius(map_size: int, search_factor: float) -> int:
    """Cells around the peak that belong to the target: half its side in the map at the normal
    search factor (the target fills ``1 / search_factor`` of the crop), at least one cell."""
    return max(1, round(map_size / (2.0 * search_factor)))


def peak_logit(score: float) -> float:
    """Logit of a score in 0..1, clipped to stay finite."""
    p = min(max(float(score), SCORE_FLOOR), 1.0 - SCORE_FLOOR)
    return math.log(p / (1.0 - p))


def _near_peak(shape: tuple[int, int], peak: tuple[int, int], radius: int) -> np.ndarray:
    """Cells within ``radius`` (Chebyshev distance) of ``peak`` (row, column)."""
    rows, cols = np.ogrid[: shape[0], : shape[1]]
    return (np.abs(rows - peak[0]) <= radius) & (np.abs(cols - peak[1]) <= radius)


def sharpness(score_map: np.ndarray, peak: tuple[int, int], radius: int) -> float:
    """Share of the map's total score within ``radius`` cells of ``peak`` (0..1)."""
    total = float(score_map.sum())
    if not total > 0:
        return 0.0
    return float(score_map[_near_peak(score_map.shape, peak, radius)].sum()) / total


def competitor(score_map: np.ndarray, peak: tuple[int, int], radius: int) -> float:
    """Highest score farther than ``radius`` cells from ``peak`` over the peak score (0..COMPETITOR_CAP)."""
    far = ~_near_peak(score_map.shape, peak, radius)
    if not far.any():
        return 0.0
    peak_score = max(float(score_map[peak]), SCORE_FLOOR)
    return min(float(score_map[far].max()) / peak_score, COMPETITOR_CAP)


def jump(box_xywh: np.ndarray, previous_xywh: np.ndarray) -> float:
    """Centre distance from the previous box, in units of its size ``sqrt(w * h)`` (0..JUMP_CAP)."""
    (cx, cy), (px, py) = geo.box_center(box_xywh), geo.box_center(previous_xywh)
    size = math.sqrt(float(previous_xywh[2]) * float(previous_xywh[3]))
    return min(math.hypot(cx - px, cy - py) / size, JUMP_CAP)


def size_change(box_xywh: np.ndarray, previous_xywh: np.ndarray) -> float:
    """``|log|`` of the side ratio ``sqrt(area / previous area)`` (0 = same size; 0..SIZE_CHANGE_CAP)."""
    ratio = (float(box_xywh[2]) * float(box_xywh[3])) / (float(previous_xywh[2]) * float(previous_xywh[3]))
    return min(abs(0.5 * math.log(ratio)), SIZE_CHANGE_CAP)


def colour_histogram(frame_rgb: np.ndarray, box_xywh: np.ndarray) -> np.ndarray | None:
    """Normalised hue-saturation histogram of the inner part of ``box_xywh`` in an RGB frame;
    None when that part is too small (or outside the frame)."""
    x, y, w, h = (float(v) for v in box_xywh)
    margin_x, margin_y = w * (1 - HISTOGRAM_INNER_FRACTION) / 2, h * (1 - HISTOGRAM_INNER_FRACTION) / 2
    x0, y0 = max(int(round(x + margin_x)), 0), max(int(round(y + margin_y)), 0)
    x1 = min(int(round(x + w - margin_x)), frame_rgb.shape[1])
    y1 = min(int(round(y + h - margin_y)), frame_rgb.shape[0])
    if x1 - x0 < HISTOGRAM_MIN_SIDE or y1 - y0 < HISTOGRAM_MIN_SIDE:
        return None
    hsv = cv2.cvtColor(np.ascontiguousarray(frame_rgb[y0:y1, x0:x1]), cv2.COLOR_RGB2HSV)
    hist = cv2.calcHist([hsv], [0, 1], None, [HUE_BINS, SATURATION_BINS], [0, 180, 0, 256]).ravel()
    return hist / max(float(hist.sum()), 1.0)


def appearance(histogram: np.ndarray | None, template_histogram: np.ndarray | None) -> float:
    """Bhattacharyya coefficient of two normalised histograms (1 = same colours, 0 = none shared);
    NEUTRAL_APPEARANCE when either is missing."""
    if histogram is None or template_histogram is None:
        return NEUTRAL_APPEARANCE
    return float(np.sqrt(histogram * template_histogram).sum())


def step_cues(score_map: np.ndarray, peak: tuple[int, int], radius: int,
              box_xywh: np.ndarray, previous_xywh: np.ndarray,
              frame_rgb: np.ndarray, template_histogram: np.ndarray | None,
              quality: float | None = None) -> dict[str, float]:
    """All cues of one step, keyed as CUE_NAMES. ``score_map`` is the raw ``H x W`` map;
    ``template_histogram`` the ``colour_histogram`` of the target at initialisation; ``quality``
    the quality map's value at ``peak`` (None without a quality head)."""
    return {
        "peak_logit": peak_logit(score_map[peak]),
        "sharpness": sharpness(score_map, peak, radius),
        "competitor": competitor(score_map, peak, radius),
        "jump": jump(box_xywh, previous_xywh),
        "size_change": size_change(box_xywh, previous_xywh),
        "appearance": appearance(colour_histogram(frame_rgb, box_xywh), template_histogram),
        "quality_logit": 0.0 if quality is None else peak_logit(quality),
    }


def step_logit(cues: dict[str, float], weights: ConfidenceWeights) -> float:
    """``bias + sum(weight * cue)``, clipped to +-LOGIT_CLIP; a NaN cue gives -LOGIT_CLIP (no trust)."""
    logit = weights.bias + sum(getattr(weights, name) * cues[name] for name in CUE_NAMES)
    if math.isnan(logit):
        return -LOGIT_CLIP
    return min(max(logit, -LOGIT_CLIP), LOGIT_CLIP)


def smoothed_logit(previous: float | None, current: float, smoothing: float) -> float:
    """Exponential moving average of the confidence's logit over a track: ``smoothing * previous +
    (1 - smoothing) * current``; the first step of a track (``previous`` None) is its own."""
    return current if previous is None else smoothing * previous + (1.0 - smoothing) * current


def probability(logit: float) -> float:
    """``sigmoid(logit)`` in 0..1; exactly 0 at or below -LOGIT_CLIP (a NaN cue's no trust)."""
    if logit <= -LOGIT_CLIP:
        return 0.0
    return 1.0 / (1.0 + math.exp(-min(logit, LOGIT_CLIP)))


def combine(cues: dict[str, float], weights: ConfidenceWeights) -> float:
    """One step's own confidence, ``sigmoid(bias + sum(weight * cue))`` in 0..1; a NaN cue gives 0."""
    return probability(step_logit(cues, weights))
