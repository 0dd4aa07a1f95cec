"""The ABTrack network: one-stream ViT backbone with BDMs and VTP masks, and the center head."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn

from ..config import ModelConfig
from .backbone import OneStreamViT
from .head import CenterPredictor, QualityHead, decode_boxes
from .pretrained import WeightLoadReport, create_timm_vit, load_pretrained
from .plan import PruningPlan

GATES = ("straight_through",)


@dataclass
class ModelOutput:
    """Head maps, the decoded box and the per-block BDM record of one forward pass."""

    score_map: torch.Tensor  # B x 1 x H x W in [0, 1]
    offset_map: torch.Tensor  # B x 2 x H x W (x, y) in feature cells
    size_map: torch.Tensor  # B x 2 x H x W (w, h) normalised to the search crop
    boxes: torch.Tensor  # B x 4 (cx, cy, w, h) normalised to the search crop
    scores: torch.Tensor  # B, the score at the chosen cell
    bypass_probs: torch.Tensor  # B x N
    executed: torch.Tensor  # B x N bool
    quality_map: Optional[torch.Tensor] = None  # B x 1 x H x W expected IoU per cell; None without a quality head


def assemble_output(maps: tuple[torch.Tensor, ...], bypass_probs: torch.Tensor,
                    executed: torch.Tensor) -> ModelOutput:
    """The output of one forward pass from the head's maps (score, offset, size[, quality])."""
    score_map, offset_map, size_map = maps[:3]
    boxes, scores = decode_boxes(score_map, offset_map, size_map)
    quality_map = maps[3] if len(maps) > 3 else None
    return ModelOutput(score_map, offset_map, size_map, boxes, scores, bypass_probs, executed, quality_map)


class ABTrackModel(nn.Module):
    """Backbone + center head; the switches of the paper's ablations are attributes."""

    def __init__(self, timm_vit: nn.Module, cfg: ModelConfig) -> None:
        super().__init__()
        self.config = dataclasses.replace(cfg)
        self.backbone = OneStreamViT(timm_vit, cfg.template_size, cfg.search_size, cfg.n_enf,
                                     cfg.drop_path_rate, cfg.patch_embed, cfg.bdm_input)
        self.head = CenterPredictor(timm_vit.embed_dim, cfg.head_channels)
        self.quality: Optional[QualityHead] = QualityHead(timm_vit.embed_dim) if cfg.quality_head else None
        self.bdm_enabled = cfg.bdm
        self.bypass_threshold = cfg.bypass_threshold
        self.pruning_plan: Optional[PruningPlan] = None
        self.pretrained_report: Optional[WeightLoadReport] = None

    @property
    def num_blocks(self) -> int:
        return self.backbone.num_blocks

    @property
    def n_enf(self) -> int:
        return self.backbone.n_enf

    @property
    def bdm_enabled(self) -> bool:
        return self.backbone.bdm_enabled

    @bdm_enabled.setter
    def bdm_enabled(self, value: bool) -> None:
        self.backbone.bdm_enabled = bool(value)

    @property
    def bypass_threshold(self) -> float:
        return self.backbone.bypass_threshold

    @bypass_threshold.setter
    def bypass_threshold(self, value: float) -> None:
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"bypass_threshold must be in [0, 1], got {value}")
        self.backbone.bypass_threshold = float(value)

    @property
    def bdm_input(self) -> str:
        return self.backbone.bdm_input

    def set_bdm_input(self, bdm_input: str) -> None:
        """Let the BDMs read the search tokens too (new weights at zero: the same decisions)."""
        self.backbone.set_bdm_input(bdm_input)
        self.config = dataclasses.replace(self.config, bdm_input=bdm_input)

    def add_quality_head(self) -> None:
        """Add the quality head (its output layer at zero: boxes and scores are unchanged)."""
        if self.quality is None:
            weight = self.head.score[0].weight
            self.quality = QualityHead(self.backbone.pos_search.shape[-1]).to(weight.device, weight.dtype)
            self.config = dataclasses.replace(self.config, quality_head=True)

    @property
    def forced_pattern(self) -> Optional[list[bool]]:
        return self.backbone.forced_pattern

    def set_forced_pattern(self, pattern: Optional[list[bool]]) -> None:
        """Force which blocks run (True = run), overriding the BDMs; None restores them."""
        self.backbone.set_forced_pattern(pattern)

    @property
    def has_vtp_masks(self) -> bool:
        return any(block.has_masks() for block in self.backbone.blocks)

    def add_vtp_masks(self) -> None:
        """Add relaxed D1/D2 masks (all 1.0: the function is unchanged) to every block."""
        if self.pruning_plan is not None:
            raise ValueError("VTP masks cannot be added to an already pruned model")
        for block in self.backbone.blocks:
            block.add_masks()

    def l1_masks(self) -> torch.Tensor:
        """sum over blocks of |D1|_1 + |D2|_1 (0 without masks); the trainer multiplies by alpha."""
        return torch.stack([block.mask_l1() for block in self.backbone.blocks]).sum()

    def embed_template(self, template: torch.Tensor) -> torch.Tensor:
        """Patch + positional embedding of the template: the only part of it that can be cached,
        because in a one-stream ViT the template tokens attend to the search tokens in every block."""
        return self.backbone.embed_template(template)

    def forward_embedded(self, template_tokens: torch.Tensor, search: torch.Tensor) -> ModelOutput:
        features = self.backbone(template_tokens, search)
        return assemble_output(self.head_maps(features.search_map), features.bypass_probs, features.executed)

    def head_maps(self, features: torch.Tensor, head: Optional[nn.Module] = None) -> tuple[torch.Tensor, ...]:
        """Score, offset and size maps of ``head`` (the model's own unless a backend passes its
        fused copy), then the quality map when the model has a quality head."""
        maps = (self.head if head is None else head)(features)
        return maps if self.quality is None else (*maps, self.quality(features))

    def forward(self, template: torch.Tensor, search: torch.Tensor) -> ModelOutput:
        return self.forward_embedded(self.embed_template(template), search)


def add_model_parts(model: ABTrackModel, wanted: ModelConfig) -> ModelConfig:
    """Give a trained ``model`` the optional parts that ``wanted`` asks for and it lacks (they
    start as no-ops, so its outputs are unchanged); returns its model config afterwards.

    Only ``bdm_input`` and ``quality_head`` can be added; every other architecture field comes
    from the checkpoint, and a part the model has is never removed (a config that leaves a field
    at its default keeps what the checkpoint has).
    """
    if wanted.bdm_input != model.bdm_input and wanted.bdm_input != "token":
        model.set_bdm_input(wanted.bdm_input)
    if wanted.quality_head:
        model.add_quality_head()
    return model.config


def build_model(cfg: ModelConfig) -> ABTrackModel:
    """Build the tracker from its config; pretrained weights come from the local ``cfg.pretrained``."""
    if cfg.gate not in GATES:
        raise ValueError(f"unknown gate '{cfg.gate}' (choose one of: {', '.join(GATES)})")
    if not 0.0 <= cfg.prune_ratio < 1.0:
        raise ValueError(f"prune_ratio must be in [0, 1), got {cfg.prune_ratio}")
    if not 0.0 <= cfg.drop_path_rate < 1.0:
        raise ValueError(f"drop_path_rate must be in [0, 1), got {cfg.drop_path_rate}")
    if cfg.patch_embed == "conv_stem" and cfg.pretrained:
        # The weight file's patch embedding would be dropped and its blocks would see tokens
        # from an untrained stem: refused rather than silently half-loaded.
        raise ValueError(f"patch_embed {cfg.patch_embed} is trained from scratch; pretrained ViT weights "
                         "come with the linear patch embedding (set patch_embed: linear or pretrained: null)")
    vit = create_timm_vit(cfg.backbone)
    patch = vit.patch_embed.patch_size[0]
    if cfg.patch_size != patch:
        raise ValueError(f"patch_size {cfg.patch_size} does not match {cfg.backbone} (patch {patch})")
    report = load_pretrained(vit, cfg.pretrained) if cfg.pretrained else None
    if cfg.depth is not None:
        if not 1 <= cfg.depth <= len(vit.blocks):
            raise ValueError(f"depth {cfg.depth} is outside 1..{len(vit.blocks)} ({cfg.backbone})")
        vit.blocks = vit.blocks[:cfg.depth]  # the pretrained weights of the kept blocks stay
    model = ABTrackModel(vit, cfg)
    model.pretrained_report = report
    if cfg.vtp_masks:
        model.add_vtp_masks()
    return model
