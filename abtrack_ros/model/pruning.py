"""ViT pruning (VTP): binarise the relaxed masks block by block and slice the blocks."""
from __future__ import annotations

import torch

from .abtrack import ABTrackModel
from .plan import PruningPlan


def _check_indices(name: str, keep: list[int], size: int) -> torch.Tensor:
    if not keep or sorted(set(keep)) != keep or keep[0] < 0 or keep[-1] >= size:
        raise ValueError(f"{name}: kept indices must be sorted, unique and inside 0..{size - 1}")
    return torch.tensor(keep, dtype=torch.long)


def apply_plan(model: ABTrackModel, plan: PruningPlan) -> None:
    """Slice every block of an unpruned ``model`` as ``plan`` says (mask values are folded in)."""
    if model.pruning_plan is not None:
        raise ValueError("the model is already pruned")
    blocks = model.backbone.blocks
    if len(plan.attn_keep) != len(blocks) or len(plan.mlp_keep) != len(blocks):
        raise ValueError(f"the pruning plan covers {len(plan.attn_keep)} blocks, the model has {len(blocks)}")
    for number, (block, attn_keep, mlp_keep) in enumerate(zip(blocks, plan.attn_keep, plan.mlp_keep)):
        device = block.norm1.weight.device
        attn_index = _check_indices(f"block {number} attention", attn_keep, block.attn.inner_dim)
        mlp_index = _check_indices(f"block {number} MLP", mlp_keep, block.mlp.hidden)
        block.attn.slice_(attn_index.to(device))
        block.mlp.slice_(mlp_index.to(device))
    model.pruning_plan = plan


def prune_model(model: ABTrackModel, ratio: float) -> PruningPlan:
    """Binarise the VTP masks with pruning ratio ``ratio`` (mu) locally per block and slice.

    Keep ratio sigma = 1 - mu: attention keeps floor(head_dim * sigma) features per head
    (= floor(d * sigma / N_h) * N_h in total), ranked by |D1| inside each head; the MLP keeps
    floor(hidden * sigma) units ranked by |D2|.
    """
    if not 0.0 <= ratio < 1.0:
        raise ValueError(f"pruning ratio must be in [0, 1), got {ratio}")
    if model.pruning_plan is not None:
        raise ValueError("the model is already pruned")
    keep_ratio = 1.0 - ratio
    blocks = model.backbone.blocks
    plan = PruningPlan(
        ratio,
        [block.attn.keep_indices(keep_ratio).tolist() for block in blocks],
        [block.mlp.keep_indices(keep_ratio).tolist() for block in blocks],
    )
    apply_plan(model, plan)
    return plan
