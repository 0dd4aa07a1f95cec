"""Center head: score, offset and size maps from the search feature map, and box decoding."""
from __future__ import annotations

import torch
from torch import nn

# Sigmoid outputs are kept off 0 and 1 so the focal loss's log terms stay finite.
SIGMOID_CLAMP = 1e-4
# Conv-BN-ReLU layers per branch; each halves the width (256 -> 128 -> 64 -> 32).
BRANCH_DEPTH = 4


def clamped_sigmoid(x: torch.Tensor) -> torch.Tensor:
    return torch.sigmoid(x).clamp(SIGMOID_CLAMP, 1.0 - SIGMOID_CLAMP)


def _branch(in_channels: int, first_width: int, out_channels: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    width = first_width
    for _ in range(BRANCH_DEPTH):
        layers += [nn.Conv2d(in_channels, width, 3, padding=1, bias=False),
                   nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
        in_channels, width = width, width // 2
    layers.append(nn.Conv2d(in_channels, out_channels, 1))
    return nn.Sequential(*layers)


class CenterPredictor(nn.Module):
    """Three Conv-BN-ReLU branches: score (1 ch), offset (2 ch: x, y), size (2 ch: w, h).

    Score and size go through a clamped sigmoid; the offset (in feature cells) stays linear.
    """

    def __init__(self, in_channels: int, head_channels: int = 256) -> None:
        super().__init__()
        if head_channels < 2 ** (BRANCH_DEPTH - 1):
            raise ValueError(f"head_channels {head_channels} is too small for {BRANCH_DEPTH} halvings")
        self.score = _branch(in_channels, head_channels, 1)
        self.offset = _branch(in_channels, head_channels, 2)
        self.size = _branch(in_channels, head_channels, 2)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return clamped_sigmoid(self.score(features)), self.offset(features), clamped_sigmoid(self.size(features))


def decode_boxes(score_map: torch.Tensor, offset_map: torch.Tensor,
                 size_map: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Boxes ``B x 4`` (cx, cy, w, h normalised to the crop) at the score argmax, and its score.

    Pure: the tracker may pass a Hann-windowed score map; the returned score is then the
    windowed value at the chosen cell.
    """
    if score_map.dim() != 4 or score_map.shape[1] != 1:
        raise ValueError(f"score_map must be B x 1 x H x W, got {tuple(score_map.shape)}")
    batch, _, height, width = score_map.shape
    for name, tensor in (("offset_map", offset_map), ("size_map", size_map)):
        if tuple(tensor.shape) != (batch, 2, height, width):
            raise ValueError(f"{name} must be {batch} x 2 x {height} x {width}, got {tuple(tensor.shape)}")
    scores, index = score_map.flatten(1).max(dim=1)
    gather = index.view(batch, 1, 1).expand(batch, 2, 1)
    offset = offset_map.flatten(2).gather(2, gather).squeeze(2)
    size = size_map.flatten(2).gather(2, gather).squeeze(2)
    cell = torch.stack([index % width, torch.div(index, width, rounding_mode="floor")], dim=1)
    extent = torch.tensor([width, height], dtype=offset.dtype, device=offset.device)
    centre = (cell.to(offset.dtype) + offset) / extent
    return torch.cat([centre, size], dim=1), scores
