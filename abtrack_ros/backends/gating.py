"""The BDM gate loop for graph backends: run exported block graphs only when the gate says so.

The torch model decides inside ``OneStreamViT.forward``; a graph backend cannot branch inside a
graph, so it exports one graph per block and this driver makes the decisions between them, with
the model's own BDM modules (so ``p_i`` is computed by exactly the same code as in torch). At
batch 1 each decision is one 192-float dot product and one scalar compare.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch

from abtrack_ros.model import ABTrackModel, ModelOutput, decode_boxes

BlockRunner = Callable[[int, torch.Tensor], torch.Tensor]
HeadRunner = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor, torch.Tensor]]


class GatedDriver:
    """Batch-1 forward pass over per-block runners, following the model's gates and switches."""

    def __init__(self, model: ABTrackModel, embed_search: Callable[[torch.Tensor], torch.Tensor],
                 run_block: BlockRunner, run_head: HeadRunner) -> None:
        self.model = model
        self.embed_search = embed_search
        self.run_block = run_block
        self.run_head = run_head

    def forward(self, template_tokens: torch.Tensor, search: torch.Tensor) -> ModelOutput:
        backbone = self.model.backbone
        bdm = backbone.bdm_enabled
        forced: Optional[list[bool]] = backbone.forced_pattern
        threshold = backbone.bypass_threshold
        search_tokens = self.embed_search(search)
        parts = [template_tokens, search_tokens]
        if bdm:
            parts.append(backbone.bypass_token.to(search_tokens.dtype).expand(1, -1, -1))
        x = torch.cat(parts, dim=1)
        n = backbone.num_blocks
        probs = [0.0] * n
        executed = [True] * n
        for index in range(n):
            run = True
            if bdm and index >= backbone.n_enf:
                bypass_token = x[:, -1].to(backbone.bypass_token.dtype)
                probs[index] = float(backbone.decisions[index - backbone.n_enf](bypass_token)[0])
                run = probs[index] <= threshold
            if forced is not None:
                run = forced[index]
            if run:
                x = self.run_block(index, x)
            executed[index] = run
        start = template_tokens.shape[1]
        score_map, offset_map, size_map = self.run_head(x[:, start:start + search_tokens.shape[1]])
        boxes, scores = decode_boxes(score_map, offset_map, size_map)
        device = score_map.device
        return ModelOutput(score_map, offset_map, size_map, boxes, scores,
                           torch.tensor([probs], device=device),
                           torch.tensor([executed], dtype=torch.bool, device=device))
