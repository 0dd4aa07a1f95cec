"""The BDM gate loop for graph backends: run exported block graphs only when the gate says so.

The torch model decides inside ``OneStreamViT.forward``; a graph backend cannot branch inside a
graph, so it exports one graph per block and ``GatedDriver`` makes the decisions between them,
following the model's switches (``bdm_enabled``, ``bypass_threshold``, ``forced_pattern``) at
every call. The tokens stay in the backend's own array type between blocks (numpy for ONNX
Runtime, CUDA tensors for TensorRT): ``GraphOps`` is what a backend provides.
"""
from __future__ import annotations

import math
from typing import Any, Optional, Protocol

import numpy as np
import torch

from abtrack_ros.model import ABTrackModel, ModelOutput, assemble_output

Array = Any  # numpy.ndarray or torch.Tensor, whichever the backend's graphs take


class GraphOps(Protocol):
    """The per-graph operations a backend provides to the driver (batch 1)."""

    def to_array(self, tensor: torch.Tensor) -> Array: ...

    def embed_search(self, search: torch.Tensor) -> Array: ...

    def concat(self, parts: list[Array]) -> Array: ...

    def bypass_token(self) -> Array: ...  # 1 x 1 x D

    def decide(self, decision: int, x: Array) -> float: ...  # p of BDM `decision` on the tokens x

    def run_block(self, index: int, x: Array) -> Array: ...

    def run_head(self, search_tokens: Array) -> tuple[torch.Tensor, ...]: ...  # score, offset, size[, quality]


class NumpyDecisions:
    """All BDMs of a model as float32 matrices: ``p_i = sigmoid(w_i . b [+ v_i . mean search] + c_i)``.

    Right after a block graph ran, a chain of small torch ops costs 50-70 us (cold caches and
    dispatch); one numpy dot product and a scalar sigmoid cost about 10 us (docs/speed.md).
    """

    def __init__(self, model: ABTrackModel) -> None:
        decisions = model.backbone.decisions
        self.search_weights: Optional[np.ndarray] = None
        if len(decisions):
            self.weights = torch.cat([d.linear.weight.detach() for d in decisions]).float().cpu().numpy()
            self.biases = [float(d.linear.bias.detach()) for d in decisions]
            self.search_tokens = decisions[0].search_tokens
            if decisions[0].search_linear is not None:
                self.search_weights = torch.cat([d.search_linear.weight.detach()
                                                 for d in decisions]).float().cpu().numpy()
        else:
            self.weights, self.biases = np.zeros((0, 0), np.float32), []

    def __call__(self, decision: int, tokens: np.ndarray) -> float:
        """``tokens``: N x D, the whole sequence of one sample with the bypass token last."""
        logit = float(np.dot(self.weights[decision], tokens[-1])) + self.biases[decision]
        if self.search_weights is not None:
            logit += float(np.dot(self.search_weights[decision], tokens[self.search_tokens].mean(axis=0)))
        return 1.0 / (1.0 + math.exp(-logit)) if logit >= 0 else math.exp(logit) / (1.0 + math.exp(logit))


class GatedDriver:
    """Batch-1 forward pass over per-block graphs, following the model's gates and switches."""

    def __init__(self, model: ABTrackModel, ops: GraphOps) -> None:
        self.model = model
        self.ops = ops

    def forward(self, template_tokens: torch.Tensor, search: torch.Tensor) -> ModelOutput:
        backbone, ops = self.model.backbone, self.ops
        bdm = backbone.bdm_enabled
        forced = backbone.forced_pattern
        threshold = backbone.bypass_threshold
        search_tokens = ops.embed_search(search)
        parts = [ops.to_array(template_tokens), search_tokens]
        if bdm:
            parts.append(ops.bypass_token())
        x = ops.concat(parts)
        n = backbone.num_blocks
        probs = [0.0] * n
        executed = [True] * n
        for index in range(n):
            run = True
            if bdm and index >= backbone.n_enf:
                probs[index] = ops.decide(index - backbone.n_enf, x)
                run = probs[index] <= threshold
            if forced is not None:
                run = forced[index]
            if run:
                x = ops.run_block(index, x)
            executed[index] = run
        start = template_tokens.shape[1]
        maps = ops.run_head(x[:, start:start + search_tokens.shape[1]])
        score_map = maps[0]
        return assemble_output(maps, torch.tensor([probs], dtype=score_map.dtype, device=score_map.device),
                               torch.tensor([executed], dtype=torch.bool, device=score_map.device))
