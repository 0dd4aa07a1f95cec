"""timm ViT architectures and loading their pretrained weights from a local file."""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Union

import timm
import torch
import torch.nn.functional as F
from torch import nn

from ..config import BACKBONES

LOG = logging.getLogger(__name__)

# Keys under which training scripts commonly nest the weights ({"model": ...} for DeiT / A-ViT).
_NESTING_KEYS = ("model", "state_dict")


@dataclass
class WeightLoadReport:
    """What happened when a pretrained file was loaded into a timm backbone."""

    path: str
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)


def create_timm_vit(name: str) -> nn.Module:
    """The timm ViT ``name`` with random weights (its layout is what a weight file must match)."""
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone '{name}' (choose one of: {', '.join(BACKBONES)})")
    return timm.create_model(name, pretrained=False)


def read_state_dict(path: Union[str, Path]) -> dict[str, torch.Tensor]:
    """Tensors of a timm state dict file, or of the ``model`` entry of a training checkpoint."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pretrained weights not found: {path}")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several unrelated types for bad files
        raise ValueError(f"{path}: cannot read pretrained weights: {exc}") from exc
    for key in _NESTING_KEYS:
        if isinstance(data, dict) and isinstance(data.get(key), dict):
            data = data[key]
            break
    if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise ValueError(f"{path}: not a state dict of tensors (nor a {{'model': state_dict}} checkpoint)")
    return data


def load_pretrained(vit: nn.Module, path: Union[str, Path]) -> WeightLoadReport:
    """Load a local weight file into a timm ViT; missing/unexpected keys are logged and returned."""
    state = read_state_dict(path)
    own = vit.state_dict()
    for key, value in state.items():
        if key in own and own[key].shape != value.shape:
            raise ValueError(f"{path}: '{key}' has shape {tuple(value.shape)}, "
                             f"the backbone expects {tuple(own[key].shape)}")
    result = vit.load_state_dict(state, strict=False)
    report = WeightLoadReport(str(path), sorted(result.missing_keys), sorted(result.unexpected_keys))
    if report.missing:
        LOG.warning("%s: %d backbone keys missing from the file: %s", path, len(report.missing),
                    ", ".join(report.missing))
    if report.unexpected:
        LOG.warning("%s: %d unexpected keys ignored: %s", path, len(report.unexpected),
                    ", ".join(report.unexpected))
    return report


def interpolate_pos_embed(grid_embed: torch.Tensor, out_side: int) -> torch.Tensor:
    """Resample a ``1 x S*S x D`` square positional grid to ``1 x out_side**2 x D`` (bicubic)."""
    tokens, dim = grid_embed.shape[1], grid_embed.shape[2]
    side = math.isqrt(tokens)
    if side * side != tokens:
        raise ValueError(f"positional embedding with {tokens} tokens is not a square grid")
    grid = grid_embed.reshape(1, side, side, dim).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=(out_side, out_side), mode="bicubic", align_corners=False)
    return grid.permute(0, 2, 3, 1).reshape(1, out_side * out_side, dim)
