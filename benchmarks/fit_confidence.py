"""Fit the tracker's confidence weights (``tracker.confidence``) for a model, by logistic regression.

Runs the Tracker over a fitting set with the LOST state off (``lost_score`` 0: plain tracking, so
what is collected does not depend on the weights being replaced), collects every tracking step's
cues (``TrackResult.cues``) with its label from the ground truth: a success step (target present, IoU
>= 0.5) is 1, a truly-lost step (target absent or IoU < 0.1) is 0, steps in between are left out
(the definitions of ``abtrack eval``'s failure section). Prints each cue's AUROC, the fitted
weights as the YAML of the config's ``tracker.confidence`` section, and the AUROC of the fitted
confidence on the fitting set and on ``--check`` sets (pick the cues on a development set, never
on a held-out one). docs/tracking.md, section "Confidence, LOST state and re-acquisition", has
the sets and commands used for the default model, e.g.

    python benchmarks/fit_confidence.py --dataset synthetic:/tmp/fit40 --split val \
        --check synthetic:/tmp/dev16 --cues peak_logit,sharpness,jump --threads 1
"""
from __future__ import annotations

import argparse
import math

import numpy as np
import torch
import yaml

from abtrack_ros.config import ConfidenceWeights
from abtrack_ros.data import load_frame, open_dataset
from abtrack_ros.evaluation.failure import SUCCESS_IOU, confidence_auroc, truly_lost
from abtrack_ros.evaluation.metrics import frame_ious, valid_gt_mask
from abtrack_ros.tracking import Tracker
from abtrack_ros.tracking.confidence import CUE_NAMES

# Plain tracking: never LOST, so the search never switches to re-acquisition.
PLAIN_TRACKING = {"lost_score": 0.0}
# A little L2 on the weights (not the bias) keeps the fit finite when two cues are near duplicates.
RIDGE = 1e-3
NEWTON_STEPS = 50


def collect(tracker: Tracker, dataset: str, split: str | None) -> tuple[np.ndarray, np.ndarray]:
    """Cues (steps x CUE_NAMES) and labels (1 success, 0 truly lost, NaN in between) of every step."""
    cues, labels = [], []
    for seq in open_dataset(dataset, split):
        usable = valid_gt_mask(seq.boxes, seq.visible, skip_first=False)
        start = int(np.argmax(usable))
        tracker.initialize(load_frame(seq.frames[start]), seq.boxes[start])
        for i in range(start + 1, len(seq.frames)):
            result = tracker.track(load_frame(seq.frames[i]))
            iou = float(frame_ious(result.box[None], seq.boxes[i][None])[0])
            lost = bool(truly_lost(np.array([iou]), np.array([usable[i]]))[0])
            labels.append(0.0 if lost else 1.0 if iou >= SUCCESS_IOU else math.nan)
            cues.append([result.cues[name] for name in CUE_NAMES])
    return np.array(cues), np.array(labels)


def fit_logistic(features: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(bias, weights...) maximising the ridge-penalised log-likelihood, by Newton's method."""
    design = np.column_stack([np.ones(len(features)), features])
    penalty = RIDGE * np.diag([0.0] + [1.0] * features.shape[1])
    coef = np.zeros(design.shape[1])
    for _ in range(NEWTON_STEPS):
        p = 1.0 / (1.0 + np.exp(-design @ coef))
        gradient = design.T @ (p - labels) + penalty @ coef
        hessian = (design * (p * (1.0 - p))[:, None]).T @ design + penalty
        coef -= np.linalg.solve(hessian, gradient)
    return coef


def auroc(values: np.ndarray, labels: np.ndarray) -> float:
    return confidence_auroc(values[labels == 1.0], values[labels == 0.0])


def logits(weights: ConfidenceWeights, cues: np.ndarray) -> np.ndarray:
    """The confidence's logit per step (monotone in the confidence, so the same AUROC)."""
    return weights.bias + cues @ np.array([getattr(weights, name) for name in CUE_NAMES])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", required=True, help="fitting set, FORMAT:PATH")
    parser.add_argument("--split", default=None)
    parser.add_argument("--check", action="append", default=[],
                        help="FORMAT:PATH to report the AUROC on (repeatable)")
    parser.add_argument("--cues", default=",".join(CUE_NAMES), help="comma-separated cues to fit (others get 0)")
    parser.add_argument("--checkpoint", default=None, help="model checkpoint (default: the package's default model)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    chosen = [CUE_NAMES.index(name) for name in args.cues.split(",")]

    tracker = Tracker.from_checkpoint(args.checkpoint, backend="torch", cfg_overrides=PLAIN_TRACKING)
    features, labels = collect(tracker, args.dataset, args.split)
    keep = ~np.isnan(labels)
    coef = fit_logistic(features[keep][:, chosen], labels[keep])
    weights = dict.fromkeys(CUE_NAMES, 0.0) | {CUE_NAMES[i]: float(w) for i, w in zip(chosen, coef[1:], strict=True)}
    fitted = ConfidenceWeights(bias=float(coef[0]), **weights)

    print(f"fitting set {args.dataset}: {int((labels == 1).sum())} success, {int((labels == 0).sum())} lost steps")
    for j, name in enumerate(CUE_NAMES):
        print(f"  AUROC of {name} alone: {auroc(features[:, j], labels):.3f}")
    print(f"  AUROC of the fitted confidence: {auroc(logits(fitted, features), labels):.3f}")
    for dataset in args.check:
        cues, check_labels = collect(tracker, dataset, args.split)
        print(f"check set {dataset}: AUROC of the fitted confidence {auroc(logits(fitted, cues), check_labels):.3f}, "
              f"of the config's {auroc(logits(tracker.cfg.confidence, cues), check_labels):.3f}")
    section = {"tracker": {"confidence": {k: round(v, 3) for k, v in vars(fitted).items()}}}
    print(yaml.safe_dump(section, sort_keys=False))


if __name__ == "__main__":
    main()
