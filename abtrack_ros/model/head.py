"""Center head: score, offset and size maps from the search feature map, box decoding, and the
optional quality head (a per-cell estimate of the decoded box's IoU).

``FusedCenterPredictor`` is the same head prepared for inference: batch norm folded into the
convolutions and the three branches run as one stack of grouped convolutions.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .fusion import conv2d_fast, fold_batchnorm

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


# Hidden width of the quality head's per-cell MLP.
QUALITY_HIDDEN = 64


class QualityHead(nn.Module):
    """Quality map ``B x 1 x H x W``: per cell, the IoU the box decoded at that cell is expected to
    have with the target (0 where the target is not), trained in the tracker's own outputs
    (``training.losses.quality_loss``). A two-layer MLP (1x1 convolutions) on the cell's feature
    and the map's mean feature, which tells a cell what else the search region holds.

    The output layer starts at zero (every cell predicts 0.5), so the head can be added to a
    trained model without changing its boxes or scores.
    """

    def __init__(self, in_channels: int, hidden: int = QUALITY_HIDDEN) -> None:
        super().__init__()
        self.hidden = nn.Conv2d(2 * in_channels, hidden, 1)
        self.out = nn.Conv2d(hidden, 1, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        context = features.mean(dim=(2, 3), keepdim=True).expand_as(features)
        hidden = F.relu(self.hidden(torch.cat([features, context], dim=1)))
        # The sigmoid in float32 and unclamped: in bf16 it rounds to exactly 1 from a logit of
        # about 6, where a confidently wrong cell (a look-alike) would get no gradient; the loss
        # and the tracker's cue clamp what they take the log of.
        return torch.sigmoid(self.out(hidden).float())


def _stack(convs: list[nn.Conv2d], groups: int) -> nn.Conv2d:
    """One convolution running the (BN-folded, so biased) ``convs`` side by side, outputs concatenated.

    ``groups=1``: all read the same input. ``groups=len(convs)``: each reads its own slice of the
    input (the previous stacked layer's output), which is the branches' own computation exactly.
    """
    first = convs[0]
    weight = torch.cat([c.weight for c in convs])
    stacked = nn.Conv2d(first.in_channels * groups, weight.shape[0], first.kernel_size, first.stride,
                        first.padding, first.dilation, groups, padding_mode=first.padding_mode,
                        device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        stacked.weight.copy_(weight)
        stacked.bias.copy_(torch.cat([c.bias for c in convs]))
    return stacked.requires_grad_(False)


def _block_diagonal(convs: list[nn.Conv2d]) -> nn.Conv2d:
    """The branches' final 1x1 convolutions (1, 2, 2 outputs) as one dense 1x1 convolution.

    The outputs differ in number, so a grouped convolution cannot hold them; the zeros of the
    block-diagonal weight add exact zeros, so the sums are unchanged.
    """
    widths = [c.in_channels for c in convs]
    first = convs[0]
    weight = first.weight.new_zeros(sum(c.out_channels for c in convs), sum(widths), 1, 1)
    row = column = 0
    for conv in convs:
        weight[row:row + conv.out_channels, column:column + conv.in_channels] = conv.weight.detach()
        row, column = row + conv.out_channels, column + conv.in_channels
    dense = nn.Conv2d(sum(widths), weight.shape[0], 1, device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        dense.weight.copy_(weight)
        dense.bias.copy_(torch.cat([c.bias.detach() for c in convs]))
    return dense.requires_grad_(False)


def _folded_layers(branch: nn.Sequential) -> tuple[list[nn.Conv2d], nn.Conv2d]:
    """A branch's Conv-BN-ReLU layers with the BN folded in, and its final 1x1 convolution."""
    layers = list(branch)
    folded = [fold_batchnorm(layers[i], layers[i + 1]) for i in range(0, 3 * BRANCH_DEPTH, 3)]
    return folded, layers[-1]


class FusedCenterPredictor(nn.Module):
    """``CenterPredictor`` for inference: BN folded, the three branches fused (same outputs).

    The first convolutions of the branches read the same features: one convolution with their
    outputs concatenated. The deeper ones read only their own branch: grouped convolutions
    (groups = 3). The final 1x1 convolutions become one block-diagonal convolution. 39 modules
    per call become 9 operators plus the output split. The weights are copied: later changes
    to the source head are not followed (build it again, as the backends do per tracker).
    """

    def __init__(self, head: CenterPredictor) -> None:
        super().__init__()
        if head.training:
            raise ValueError("the fused head folds batch norm statistics: call head.eval() first (inference only)")
        branches = [_folded_layers(b) for b in (head.score, head.offset, head.size)]
        layers = [_stack([convs[0] for convs, _ in branches], groups=1)]
        layers += [_stack([convs[depth] for convs, _ in branches], groups=len(branches))
                   for depth in range(1, BRANCH_DEPTH)]
        self.layers = nn.ModuleList(layers)
        self.out = _block_diagonal([final for _, final in branches])
        self.split = [final.out_channels for _, final in branches]
        self.eval()

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = features
        for layer in self.layers:
            x = F.relu(conv2d_fast(layer, x), inplace=True)
        score, offset, size = torch.split(self.out(x), self.split, dim=1)
        return clamped_sigmoid(score), offset, clamped_sigmoid(size)


def cell_boxes(offset_map: torch.Tensor, size_map: torch.Tensor) -> torch.Tensor:
    """``B x (H * W) x 4``: the box (cx, cy, w, h normalised to the crop) decoded at every cell, in
    row-major cell order: centre ``(cell + offset) / (W, H)``, size from the size map."""
    batch, _, height, width = size_map.shape
    rows, cols = torch.meshgrid(torch.arange(height, device=size_map.device),
                                torch.arange(width, device=size_map.device), indexing="ij")
    cell = torch.stack([cols.flatten(), rows.flatten()]).to(offset_map.dtype).unsqueeze(0)
    extent = torch.tensor([width, height], dtype=offset_map.dtype, device=offset_map.device).view(1, 2, 1)
    centre = (cell + offset_map.flatten(2)) / extent
    return torch.cat([centre, size_map.flatten(2).to(centre.dtype)], dim=1).transpose(1, 2)


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
    boxes = cell_boxes(offset_map, size_map).gather(1, index.view(batch, 1, 1).expand(batch, 1, 4))
    return boxes.squeeze(1), scores
