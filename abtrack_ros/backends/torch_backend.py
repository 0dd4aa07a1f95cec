"""The PyTorch backend: the nn.Module itself (fp32, fp16 on CUDA, bf16 weights on CPU), with the
patch embedding and the center head prepared for inference (batch norm folded, head branches
fused)."""
from __future__ import annotations

import torch

from abtrack_ros.model import ABTrackModel, ModelOutput, assemble_output
from abtrack_ros.model.head import FusedCenterPredictor
from abtrack_ros.model.patch_embed import fuse_patch_embed

from .base import InferenceBackend


class TorchBackend(InferenceBackend):
    """Runs the model's blocks as they are, and fused copies of its patch embedding and head.

    The blocks, BDMs and the quality head are shared with ``model`` (its switches and weights are
    followed at every call); the patch embedding's and the center head's weights are read once,
    here, as the graph backends read theirs.
    """

    name = "torch"

    def __init__(self, model: ABTrackModel, device: torch.device) -> None:
        super().__init__(model, device)
        self._dtype = next(model.parameters()).dtype
        self.head = FusedCenterPredictor(model.head)
        self.patch_embed = fuse_patch_embed(model.backbone.patch_embed)

    @property
    def input_dtype(self) -> torch.dtype:
        return self._dtype

    @property
    def description(self) -> str:
        return f"torch {str(self._dtype).replace('torch.', '')}"

    def embed_template(self, template: torch.Tensor) -> torch.Tensor:
        return self.model.backbone.embed_template(template, self.patch_embed)

    def forward_embedded(self, template_tokens: torch.Tensor, search: torch.Tensor) -> ModelOutput:
        features = self.model.backbone(template_tokens, search, self.patch_embed)
        return assemble_output(self.model.head_maps(features.search_map, self.head), features.bypass_probs,
                               features.executed)
