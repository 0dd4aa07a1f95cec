"""The PyTorch backend: the nn.Module itself (fp32, fp16 on CUDA, bf16 weights on CPU)."""
from __future__ import annotations

import torch

from abtrack_ros.model import ABTrackModel, ModelOutput

from .base import InferenceBackend


class TorchBackend(InferenceBackend):
    """Runs the model as it is; the model's parameter dtype is the precision (the Tracker casts it)."""

    name = "torch"

    def __init__(self, model: ABTrackModel, device: torch.device) -> None:
        super().__init__(model, device)
        self._dtype = next(model.parameters()).dtype

    @property
    def input_dtype(self) -> torch.dtype:
        return self._dtype

    @property
    def description(self) -> str:
        return f"torch {str(self._dtype).replace('torch.', '')}"

    def embed_template(self, template: torch.Tensor) -> torch.Tensor:
        return self.model.embed_template(template)

    def forward_embedded(self, template_tokens: torch.Tensor, search: torch.Tensor) -> ModelOutput:
        return self.model.forward_embedded(template_tokens, search)
