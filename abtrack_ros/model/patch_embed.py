"""Patch embeddings: how an image becomes a grid of tokens (template and search share one).

``linear`` is the ViT's patchify, one ``patch x patch`` convolution of stride ``patch``, whose
weights a pretrained timm backbone provides. ``conv_stem`` replaces it with a small
convolutional stem for training from scratch (the idea of Xiao et al. 2021, "Early Convolutions
Help Transformers See Better"): log2(patch) stride-2 3x3 conv-BN-ReLU stages whose widths double
up to the embed dim, then a 1x1 projection. The total stride is the patch size, so the token
grids, the positional embeddings and everything after them are unchanged.

``FusedConvStem`` is the conv stem prepared for inference: batch norm folded into each stage's
convolution (the stem's share of a step's fixed cost, docs/speed.md).
"""
from __future__ import annotations

import copy
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from .fusion import conv2d_fast, fold_batchnorm

PATCH_EMBEDS = ("linear", "conv_stem")


def conv_stem_widths(dim: int, patch: int) -> list[int]:
    """Output channels of the stem's stride-2 stages: doubling, the last one ``dim``."""
    stages = patch.bit_length() - 1
    if patch < 2 or patch != 1 << stages:
        raise ValueError(f"patch_embed conv_stem needs a power-of-two patch size >= 2 "
                         f"(one stride-2 stage per factor 2), got {patch}")
    first = dim >> (stages - 1)
    if first << (stages - 1) != dim:
        raise ValueError(f"patch_embed conv_stem halves the embed dim {dim} {stages - 1} times "
                         "for its first stages; it must be divisible by that")
    return [first << stage for stage in range(stages)]


def _conv_bn_relu(in_chans: int, out_chans: int) -> nn.Sequential:
    return nn.Sequential(OrderedDict(
        conv=nn.Conv2d(in_chans, out_chans, 3, stride=2, padding=1, bias=False),  # BN's shift is the bias
        norm=nn.BatchNorm2d(out_chans),
        act=nn.ReLU(inplace=True)))


class ConvStem(nn.Module):
    """Stride-2 3x3 conv-BN-ReLU stages, then a 1x1 projection to ``dim``: total stride ``patch``."""

    def __init__(self, dim: int, patch: int, in_chans: int = 3) -> None:
        super().__init__()
        widths = conv_stem_widths(dim, patch)
        self.stages = nn.Sequential(*(_conv_bn_relu(c_in, c_out)
                                      for c_in, c_out in zip([in_chans, *widths[:-1]], widths)))
        self.proj = nn.Conv2d(widths[-1], dim, 1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.proj(self.stages(image))


class FusedConvStem(nn.Module):
    """``ConvStem`` for inference: each stage one biased convolution (its BN folded in) and a
    ReLU; same outputs. The weights are copied, so later changes to the source stem are not
    followed (the backends build it again per tracker, as the fused head)."""

    def __init__(self, stem: ConvStem) -> None:
        super().__init__()
        if stem.training:
            raise ValueError("the fused stem folds batch norm statistics: call stem.eval() first (inference only)")
        self.convs = nn.ModuleList(fold_batchnorm(stage.conv, stage.norm) for stage in stem.stages)
        self.proj = copy.deepcopy(stem.proj)  # no batch norm after it: nothing to fold
        self.requires_grad_(False)
        self.eval()

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = image
        for conv in self.convs:
            x = F.relu(conv2d_fast(conv, x), inplace=True)
        return conv2d_fast(self.proj, x)


def fuse_patch_embed(patch_embed: nn.Module) -> nn.Module:
    """The patch embedding as inference runs it: a conv stem fused, the linear patchify as it is
    (a single convolution without batch norm has nothing to fold)."""
    return FusedConvStem(patch_embed) if isinstance(patch_embed, ConvStem) else patch_embed


def create_patch_embed(kind: str, timm_vit: nn.Module) -> nn.Module:
    """The patch embedding ``kind`` for ``timm_vit``'s embed dim and patch size (B x 3 x H x W ->
    B x D x H/patch x W/patch); ``linear`` starts from the timm weights."""
    dim, patch = timm_vit.embed_dim, timm_vit.patch_embed.patch_size[0]
    if kind == "linear":
        # A bare Conv2d, so that its state-dict keys stay those of every existing checkpoint.
        embed = nn.Conv2d(3, dim, patch, patch)
        embed.load_state_dict(timm_vit.patch_embed.proj.state_dict())
        return embed
    if kind == "conv_stem":
        return ConvStem(dim, patch)
    raise ValueError(f"unknown patch_embed '{kind}' (choose one of: {', '.join(PATCH_EMBEDS)})")
