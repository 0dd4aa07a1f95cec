"""Prunable ViT blocks: attention and MLP with optional relaxed VTP masks and physical slicing.

The weights come from timm blocks (copied in :meth:`PrunableBlock.from_timm`), but the modules
that run are these, so that a pruned block really holds smaller ``nn.Linear`` layers and a
bypassed block really is not called.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from timm.layers import DropPath
from torch import nn


# Tolerance for floor(size * keep_ratio) when the product is an integer up to float rounding.
_FLOOR_EPS = 1e-9


def kept_count(size: int, keep_ratio: float) -> int:
    """floor(size * keep_ratio), robust to 0.7 * 10 == 6.999..."""
    return math.floor(size * keep_ratio + _FLOOR_EPS)


def _slice_linear(layer: nn.Linear, out_index: Optional[torch.Tensor] = None,
                  in_index: Optional[torch.Tensor] = None,
                  out_scale: Optional[torch.Tensor] = None,
                  in_scale: Optional[torch.Tensor] = None) -> nn.Linear:
    """A new, smaller Linear keeping the given output rows / input columns.

    ``out_scale`` multiplies the kept rows (weight and bias), ``in_scale`` the kept input
    columns: this folds a diagonal mask on either side of the layer into its weights.
    """
    weight = layer.weight.detach()
    bias = layer.bias.detach() if layer.bias is not None else None
    if out_index is not None:
        weight = weight.index_select(0, out_index)
        bias = bias.index_select(0, out_index) if bias is not None else None
    if in_index is not None:
        weight = weight.index_select(1, in_index)
    if out_scale is not None:
        weight = weight * out_scale[:, None]
        bias = bias * out_scale if bias is not None else None
    if in_scale is not None:
        weight = weight * in_scale[None, :]
    new = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None,
                    device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        new.weight.copy_(weight)
        if bias is not None:
            new.bias.copy_(bias)
    return new


class PrunableAttention(nn.Module):
    """Multi-head self-attention whose inner (q/k/v) width can be masked and sliced.

    ``inner_mask`` is the relaxed D1 of VTP: one value per inner feature, multiplied into the
    q, k and v features (and therefore into the input of ``proj``). The softmax scale stays
    the ORIGINAL ``head_dim ** -0.5`` after slicing, so the pruned block computes exactly what
    the masked block computed.
    """

    def __init__(self, dim: int, num_heads: int, inner_dim: Optional[int] = None,
                 scale: Optional[float] = None) -> None:
        super().__init__()
        inner_dim = dim if inner_dim is None else inner_dim
        if inner_dim % num_heads:
            raise ValueError(f"attention inner dim {inner_dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.inner_dim = inner_dim
        self.scale = (dim // num_heads) ** -0.5 if scale is None else scale
        self.qkv = nn.Linear(dim, 3 * inner_dim)
        self.proj = nn.Linear(inner_dim, dim)
        self.inner_mask: Optional[nn.Parameter] = None

    @property
    def head_dim(self) -> int:
        return self.inner_dim // self.num_heads

    def add_mask(self) -> None:
        self.inner_mask = nn.Parameter(torch.ones(self.inner_dim, device=self.proj.weight.device,
                                                  dtype=self.proj.weight.dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, _ = x.shape
        qkv = self.qkv(x).reshape(batch, tokens, 3, self.num_heads, self.head_dim)
        if self.inner_mask is not None:
            qkv = qkv * self.inner_mask.view(1, 1, 1, self.num_heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        out = F.scaled_dot_product_attention(q, k, v, scale=self.scale)
        return self.proj(out.transpose(1, 2).reshape(batch, tokens, self.inner_dim))

    def keep_indices(self, keep_ratio: float) -> torch.Tensor:
        """Inner features to keep: the same count in every head, ranked by |D1| inside each head."""
        if self.inner_mask is None:
            raise ValueError("attention has no VTP mask to rank (build with model.vtp_masks: true)")
        per_head = kept_count(self.head_dim, keep_ratio)
        if per_head < 1:
            raise ValueError(f"keep ratio {keep_ratio} leaves no dimension in a {self.head_dim}-dim head")
        scores = self.inner_mask.detach().abs().view(self.num_heads, self.head_dim)
        top = scores.topk(per_head, dim=1).indices.sort(dim=1).values
        offsets = torch.arange(self.num_heads, device=top.device)[:, None] * self.head_dim
        return (top + offsets).flatten()

    def slice_(self, keep: torch.Tensor) -> None:
        """Physically keep only ``keep`` inner features, folding the mask values into qkv."""
        if keep.numel() % self.num_heads:
            raise ValueError(f"{keep.numel()} kept inner dims are not a multiple of {self.num_heads} heads")
        scale = self.inner_mask.detach().index_select(0, keep) if self.inner_mask is not None else None
        qkv_rows = torch.cat([keep + part * self.inner_dim for part in range(3)])
        self.qkv = _slice_linear(self.qkv, out_index=qkv_rows,
                                 out_scale=scale.repeat(3) if scale is not None else None)
        self.proj = _slice_linear(self.proj, in_index=keep)
        self.inner_dim = keep.numel()
        self.inner_mask = None


class PrunableMlp(nn.Module):
    """fc1 -> GELU -> (relaxed D2 mask) -> fc2, with a sliceable hidden width."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)
        self.hidden_mask: Optional[nn.Parameter] = None

    @property
    def hidden(self) -> int:
        return self.fc1.out_features

    def add_mask(self) -> None:
        self.hidden_mask = nn.Parameter(torch.ones(self.hidden, device=self.fc1.weight.device,
                                                   dtype=self.fc1.weight.dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = self.act(self.fc1(x))
        if self.hidden_mask is not None:
            hidden = hidden * self.hidden_mask
        return self.fc2(hidden)

    def keep_indices(self, keep_ratio: float) -> torch.Tensor:
        if self.hidden_mask is None:
            raise ValueError("MLP has no VTP mask to rank (build with model.vtp_masks: true)")
        count = kept_count(self.hidden, keep_ratio)
        if count < 1:
            raise ValueError(f"keep ratio {keep_ratio} leaves no MLP hidden unit")
        return self.hidden_mask.detach().abs().topk(count).indices.sort().values

    def slice_(self, keep: torch.Tensor) -> None:
        """Keep only ``keep`` hidden units; the mask sits after GELU, so it folds into fc2's columns."""
        scale = self.hidden_mask.detach().index_select(0, keep) if self.hidden_mask is not None else None
        self.fc1 = _slice_linear(self.fc1, out_index=keep)
        self.fc2 = _slice_linear(self.fc2, in_index=keep, in_scale=scale)
        self.hidden_mask = None


class PrunableBlock(nn.Module):
    """Pre-norm transformer block (x + MSA(LN(x)); x + MLP(LN(x))) built from prunable parts."""

    def __init__(self, dim: int, num_heads: int, hidden: int, drop_path: float = 0.0,
                 eps: float = 1e-6) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = PrunableAttention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = PrunableMlp(dim, hidden)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    @classmethod
    def from_timm(cls, block: nn.Module, drop_path: float = 0.0) -> "PrunableBlock":
        """Copy a timm ``Block`` (plain pre-norm ViT block) into a prunable one."""
        for name in ("ls1", "ls2", "attn.q_norm", "attn.k_norm", "attn.norm", "mlp.norm"):
            if not isinstance(block.get_submodule(name), nn.Identity):
                raise ValueError(f"unsupported timm block: '{name}' is not an identity")
        dim = block.norm1.normalized_shape[0]
        new = cls(dim, block.attn.num_heads, block.mlp.fc1.out_features, drop_path,
                  eps=block.norm1.eps)
        new.load_state_dict(block.state_dict())  # strict: the parameter names match timm's
        return new

    def add_masks(self) -> None:
        self.attn.add_mask()
        self.mlp.add_mask()

    def has_masks(self) -> bool:
        return self.attn.inner_mask is not None and self.mlp.hidden_mask is not None

    def mask_l1(self) -> torch.Tensor:
        total = self.norm1.weight.new_zeros(())
        for mask in (self.attn.inner_mask, self.mlp.hidden_mask):
            if mask is not None:
                total = total + mask.abs().sum()
        return total

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))
