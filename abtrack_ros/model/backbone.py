"""One-stream ViT backbone with bypass decision modules (BDM).

Template and search patches share one patch embedding (the ViT's linear patchify or a
convolutional stem, ``patch_embed.py``) and get separate positional embeddings;
they (and, with BDM on, one bypass token) run through the blocks together. Block ``i``
(1-based) with ``i > n_enf`` has a BDM: ``p_i = sigmoid(linear_i(bypass token entering i))``,
plus, with ``bdm_input: token_search_mean``, a linear term of the mean search token entering i.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Union

import torch
from torch import nn

from .blocks import PrunableBlock
from .patch_embed import create_patch_embed
from .pretrained import interpolate_pos_embed

# Initial BDM bias: sigmoid(-3) ~ 0.05, so a freshly added BDM runs every block and the
# fine-tuning starts from the behaviour of the model without BDMs.
BDM_INIT_BIAS = -3.0
# Keeps the logistic noise and the logit of a saturated probability finite.
GATE_NOISE_EPS = 1e-6
# What a BDM reads: the bypass token alone (the paper), or also the mean of the search tokens.
BDM_INPUTS = ("token", "token_search_mean")


# Whether a block ran: one bool for the whole batch, or a B bool tensor when decided per sample.
Ran = Union[bool, torch.Tensor]


@dataclass
class BackboneOutput:
    """Search features plus what the BDMs decided."""

    search_map: torch.Tensor  # B x D x Hs x Ws (after the final LayerNorm)
    bypass_probs: torch.Tensor  # B x N, 0 where there is no BDM or BDM is off
    executed: torch.Tensor  # B x N bool


def check_bdm_input(bdm_input: str) -> None:
    if bdm_input not in BDM_INPUTS:
        raise ValueError(f"unknown bdm_input '{bdm_input}' (choose one of: {', '.join(BDM_INPUTS)})")


class BypassDecision(nn.Module):
    """p = sigmoid(w . bypass token [+ v . mean search token] + c): the probability of bypassing
    one block. It reads the whole token sequence (template | search | bypass token)."""

    def __init__(self, dim: int, search_tokens: slice, reads_search: bool = False) -> None:
        super().__init__()
        self.linear = nn.Linear(dim, 1)
        nn.init.zeros_(self.linear.weight)
        nn.init.constant_(self.linear.bias, BDM_INIT_BIAS)
        self.search_tokens = search_tokens
        self.search_linear: Optional[nn.Linear] = None
        if reads_search:
            self.add_search_input()

    def add_search_input(self) -> None:
        """Also read the mean search token; zero weights, so the decisions are unchanged at first."""
        weight = self.linear.weight
        self.search_linear = nn.Linear(weight.shape[1], 1, bias=False, device=weight.device, dtype=weight.dtype)
        nn.init.zeros_(self.search_linear.weight)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        logit = self.linear(tokens[:, -1])
        if self.search_linear is not None:
            logit = logit + self.search_linear(tokens[:, self.search_tokens].mean(dim=1))
        return torch.sigmoid(logit).squeeze(-1)


class OneStreamViT(nn.Module):
    """Patch embedding, positional embeddings, prunable blocks, BDMs and the final norm."""

    def __init__(self, timm_vit: nn.Module, template_size: int, search_size: int,
                 n_enf: int, drop_path_rate: float = 0.0, patch_embed: str = "linear",
                 bdm_input: str = "token") -> None:
        super().__init__()
        patch = timm_vit.patch_embed.patch_size[0]
        for name, size in (("template_size", template_size), ("search_size", search_size)):
            if size <= 0 or size % patch:
                raise ValueError(f"{name} {size} is not a positive multiple of the patch size {patch}")
        num_blocks = len(timm_vit.blocks)
        check_bdm_input(bdm_input)
        if not 0 <= n_enf <= num_blocks:
            raise ValueError(f"n_enf {n_enf} is outside 0..{num_blocks} (the number of blocks)")
        dim = timm_vit.embed_dim
        self.patch_size = patch
        self.template_side = template_size // patch
        self.search_side = search_size // patch
        self.n_enf = n_enf

        self.patch_embed = create_patch_embed(patch_embed, timm_vit)
        grid = timm_vit.pos_embed.detach()[:, timm_vit.num_prefix_tokens:]  # the cls slot is dropped
        self.pos_template = nn.Parameter(interpolate_pos_embed(grid, self.template_side))
        self.pos_search = nn.Parameter(interpolate_pos_embed(grid, self.search_side))

        rates = torch.linspace(0, drop_path_rate, num_blocks).tolist()
        self.blocks = nn.ModuleList(PrunableBlock.from_timm(b, r) for b, r in zip(timm_vit.blocks, rates))
        self.norm = nn.LayerNorm(dim, eps=timm_vit.norm.eps)
        self.norm.load_state_dict(timm_vit.norm.state_dict())

        # The bypass token starts as the pretrained cls token at its position: a summary token
        # the pretrained blocks already know how to update.
        self.bypass_token = nn.Parameter(
            (timm_vit.cls_token.detach() + timm_vit.pos_embed.detach()[:, :1]).clone())
        search_tokens = slice(self.template_side ** 2, self.template_side ** 2 + self.search_side ** 2)
        self.decisions = nn.ModuleList(BypassDecision(dim, search_tokens, bdm_input == "token_search_mean")
                                       for _ in range(num_blocks - n_enf))
        self.bdm_input = bdm_input

        self.bdm_enabled = False
        self.bypass_threshold = 0.5
        self.forced_pattern: Optional[list[bool]] = None
        # Training only: scale of the logistic noise added to the BDM logits before the hard
        # decision (train.gate_noise; 0 = the paper's deterministic gate).
        self.gate_noise = 0.0

    @property
    def num_blocks(self) -> int:
        return len(self.blocks)

    def set_bdm_input(self, bdm_input: str) -> None:
        """Give the BDMs the search input (zero weights: same decisions); removing it is refused,
        because it would throw trained weights away."""
        check_bdm_input(bdm_input)
        if bdm_input == self.bdm_input:
            return
        if bdm_input == "token":
            raise ValueError("the BDMs already read the search tokens; that input cannot be removed")
        for decision in self.decisions:
            decision.add_search_input()
        self.bdm_input = bdm_input

    def set_forced_pattern(self, pattern: Optional[list[bool]]) -> None:
        if pattern is not None:
            if len(pattern) != self.num_blocks or not all(isinstance(v, bool) for v in pattern):
                raise ValueError(f"forced pattern must be {self.num_blocks} booleans, got {pattern!r}")
            pattern = list(pattern)
        self.forced_pattern = pattern

    def embed(self, image: torch.Tensor, side: int, pos: torch.Tensor,
              patch_embed: Optional[nn.Module] = None) -> torch.Tensor:
        """Tokens of ``image`` through ``patch_embed`` (the model's own unless a backend passes
        its fused copy), plus the positional embedding ``pos``."""
        size = side * self.patch_size
        if image.dim() != 4 or image.shape[1] != 3 or image.shape[2:] != (size, size):
            raise ValueError(f"expected an image batch B x 3 x {size} x {size}, got {tuple(image.shape)}")
        embed = self.patch_embed if patch_embed is None else patch_embed
        return embed(image).flatten(2).transpose(1, 2) + pos

    def embed_template(self, template: torch.Tensor, patch_embed: Optional[nn.Module] = None) -> torch.Tensor:
        return self.embed(template, self.template_side, self.pos_template, patch_embed)

    def embed_search(self, search: torch.Tensor, patch_embed: Optional[nn.Module] = None) -> torch.Tensor:
        return self.embed(search, self.search_side, self.pos_search, patch_embed)

    def forward(self, template_tokens: torch.Tensor, search: torch.Tensor,
                patch_embed: Optional[nn.Module] = None) -> BackboneOutput:
        expected = (self.template_side ** 2, self.pos_template.shape[-1])
        if template_tokens.dim() != 3 or tuple(template_tokens.shape[1:]) != expected:
            raise ValueError(f"template tokens must be B x {expected[0]} x {expected[1]}, "
                             f"got {tuple(template_tokens.shape)}")
        search_tokens = self.embed_search(search, patch_embed)
        batch = search_tokens.shape[0]
        if template_tokens.shape[0] != batch:
            raise ValueError(f"template batch {template_tokens.shape[0]} != search batch {batch}")
        parts = [template_tokens, search_tokens]
        if self.bdm_enabled:
            parts.append(self.bypass_token.expand(batch, -1, -1))
        x = torch.cat(parts, dim=1)

        probs = x.new_zeros(batch, self.num_blocks)
        executed = torch.ones(batch, self.num_blocks, dtype=torch.bool, device=x.device)
        for index, block in enumerate(self.blocks):
            if self.bdm_enabled and index >= self.n_enf:
                p = self.decisions[index - self.n_enf](x)
                probs[:, index] = p
            else:
                p = None
            if self.forced_pattern is not None:
                x, ran = self._run_forced(block, x, self.forced_pattern[index])
            elif p is None:
                x, ran = block(x), True
            elif self.training:
                x, ran = self._run_straight_through(block, x, p)
            else:
                x, ran = self._run_gated(block, x, p)
            if ran is not True:  # a bool False or a per-sample mask
                executed[:, index] = ran

        start = template_tokens.shape[1]
        search_out = self.norm(x[:, start:start + search_tokens.shape[1]])
        search_map = search_out.transpose(1, 2).reshape(batch, -1, self.search_side, self.search_side)
        return BackboneOutput(search_map, probs, executed)

    @staticmethod
    def _run_forced(block: nn.Module, x: torch.Tensor, run: bool) -> tuple[torch.Tensor, Ran]:
        return (block(x), True) if run else (x, False)

    def _run_straight_through(self, block: nn.Module, x: torch.Tensor,
                              p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Training: hard skip in the forward pass, gradient of the soft gate (1 - p) backward.

        With ``gate_noise`` the hard decision is taken on ``sigmoid(logit(p) + gate_noise * L)``,
        ``L`` standard logistic noise, so that paths near the threshold get explored; the gradient
        is still that of ``p``."""
        decide = p.detach().float()
        if self.gate_noise > 0:
            uniform = torch.rand_like(decide).clamp(GATE_NOISE_EPS, 1.0 - GATE_NOISE_EPS)
            noise = torch.log(uniform) - torch.log1p(-uniform)
            decide = torch.sigmoid(torch.logit(decide, eps=GATE_NOISE_EPS) + self.gate_noise * noise)
        hard = (decide <= self.bypass_threshold).to(x.dtype)
        soft = 1.0 - p
        gate = (hard + soft - soft.detach()).view(-1, 1, 1)
        return x + gate * (block(x) - x), hard.bool()

    def _run_gated(self, block: nn.Module, x: torch.Tensor,
                   p: torch.Tensor) -> tuple[torch.Tensor, Ran]:
        """Inference: a bypassed block is not computed; batches compute only the running samples."""
        if x.shape[0] == 1:
            if float(p[0]) > self.bypass_threshold:
                return x, False
            return block(x), True
        run = p <= self.bypass_threshold
        if bool(run.all()):
            return block(x), True
        if not bool(run.any()):
            return x, run
        index = run.nonzero().squeeze(1)
        return x.index_copy(0, index, block(x.index_select(0, index))), run
