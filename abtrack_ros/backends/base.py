"""The interface every inference backend implements, shared by the Tracker, the bench and the node."""
from __future__ import annotations

from abc import ABC, abstractmethod

import torch

from abtrack_ros.config import BACKEND_NAMES
from abtrack_ros.model import ABTrackModel, ModelOutput

__all__ = ["BACKEND_NAMES", "BackendUnavailableError", "InferenceBackend"]


class BackendUnavailableError(ValueError):
    """The requested backend cannot run here (package missing, wrong device, ...)."""


class InferenceBackend(ABC):
    """Runs an ABTrack model: ``embed_template`` once per target, ``forward_embedded`` per frame.

    Every backend reads the run-time switches of ``model`` (``bdm_enabled``, ``bypass_threshold``,
    ``forced_pattern``) at each call, so changing them on the nn.Module (as the node and the
    evaluator do) changes what every backend executes. Inputs and outputs are torch tensors on
    ``device``; the outputs are the torch model's ``ModelOutput``.
    """

    name: str = "abstract"

    def __init__(self, model: ABTrackModel, device: torch.device) -> None:
        self.model = model
        self.device = device

    @property
    def input_dtype(self) -> torch.dtype:
        """dtype of the image tensors this backend takes."""
        return torch.float32

    @property
    def description(self) -> str:
        """One line naming the backend and its precision (for logs, diagnostics and reports)."""
        return self.name

    @abstractmethod
    def embed_template(self, template: torch.Tensor) -> torch.Tensor:
        """1 x 3 x T x T normalised template -> template tokens (cached by the tracker)."""

    @abstractmethod
    def forward_embedded(self, template_tokens: torch.Tensor, search: torch.Tensor) -> ModelOutput:
        """Template tokens and a 1 x 3 x S x S search crop -> maps, box, score and the BDM record."""


def require_batch_one(search: torch.Tensor, backend: str) -> None:
    """Graph backends decide the bypass gates for one sample at a time (as the tracker runs)."""
    if search.dim() != 4 or search.shape[0] != 1:
        raise ValueError(f"the {backend} backend runs batch size 1 only, got a search batch of shape "
                         f"{tuple(search.shape)}")
