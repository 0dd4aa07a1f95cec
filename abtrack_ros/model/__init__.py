"""ABTrack network: one-stream ViT with bypass decision modules, ViT pruning and a center head.

See docs/ARCHITECTURE.md (Model API) and docs/model.md.
"""
from .abtrack import ABTrackModel, ModelOutput, add_model_parts, assemble_output, build_model
from .backbone import BDM_INPUTS
from .checkpoint import CheckpointError, config_for_model, default_checkpoint_path, load_checkpoint, save_checkpoint
from .head import CenterPredictor, QualityHead, cell_boxes, decode_boxes
from .pretrained import WeightLoadReport, interpolate_pos_embed, load_pretrained
from .plan import PruningPlan
from .pruning import apply_plan, prune_model

__all__ = [
    "BDM_INPUTS",
    "ABTrackModel", "ModelOutput", "add_model_parts", "assemble_output", "build_model",
    "CheckpointError", "config_for_model", "default_checkpoint_path", "load_checkpoint", "save_checkpoint",
    "CenterPredictor", "QualityHead", "cell_boxes", "decode_boxes",
    "WeightLoadReport", "interpolate_pos_embed", "load_pretrained",
    "PruningPlan", "apply_plan", "prune_model",
]
