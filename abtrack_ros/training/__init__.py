"""Training: losses, the pair sampler, and the three-stage pipeline (see docs/training.md)."""
from .losses import LossWeights, TrackingCriterion, focal_loss, gaussian_heatmap, gaussian_radius, giou_and_iou
from .sampler import PairDataset, PairSettings, WeightedSource
from .trainer import STAGES, TrainingError, TrainOptions, prune_checkpoint, run_training

__all__ = [
    "LossWeights", "TrackingCriterion", "focal_loss", "gaussian_heatmap", "gaussian_radius", "giou_and_iou",
    "PairDataset", "PairSettings", "WeightedSource",
    "STAGES", "TrainingError", "TrainOptions", "prune_checkpoint", "run_training",
]
