"""Center head structure and the pure box decoder."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from abtrack_ros.model import CenterPredictor, decode_boxes


def _maps(batch=2, side=16):
    score = torch.full((batch, 1, side, side), 0.1)
    offset = torch.zeros(batch, 2, side, side)
    size = torch.full((batch, 2, side, side), 0.5)
    return score, offset, size


def test_decode_at_the_score_argmax():
    score, offset, size = _maps()
    score[0, 0, 3, 10] = 0.9  # row 3 (y), column 10 (x)
    offset[0, :, 3, 10] = torch.tensor([0.25, 0.75])
    size[0, :, 3, 10] = torch.tensor([0.2, 0.4])
    score[1, 0, 15, 0] = 0.8
    offset[1, :, 15, 0] = torch.tensor([0.5, 0.5])
    boxes, scores = decode_boxes(score, offset, size)
    assert torch.allclose(boxes[0], torch.tensor([(10 + 0.25) / 16, (3 + 0.75) / 16, 0.2, 0.4]))
    assert torch.allclose(boxes[1], torch.tensor([0.5 / 16, 15.5 / 16, 0.5, 0.5]))
    assert torch.allclose(scores, torch.tensor([0.9, 0.8]))


def test_decode_follows_a_hann_windowed_score_map():
    score, offset, size = _maps(batch=1)
    score[0, 0, 0, 0] = 0.95  # strongest raw peak, at the border
    score[0, 0, 8, 7] = 0.7  # weaker peak near the centre
    hann = torch.from_numpy(np.outer(np.hanning(16), np.hanning(16))).float()
    raw_boxes, _ = decode_boxes(score, offset, size)
    boxes, scores = decode_boxes(score * hann, offset, size)
    assert torch.allclose(raw_boxes[0, :2], torch.tensor([0.0, 0.0]))
    assert torch.allclose(boxes[0, :2], torch.tensor([7 / 16, 8 / 16]))
    assert scores[0] == pytest.approx(0.7 * float(hann[8, 7]))
    assert float(score[0, 0, 0, 0]) == pytest.approx(0.95)  # the input was not modified


def test_decode_rejects_mismatched_maps():
    score, offset, size = _maps()
    with pytest.raises(ValueError, match="offset_map"):
        decode_boxes(score, offset[:, :, :8], size)
    with pytest.raises(ValueError, match="score_map"):
        decode_boxes(score[:, 0], offset, size)


def test_center_predictor_branches_and_ranges():
    head = CenterPredictor(in_channels=48, head_channels=256).eval()
    widths = [m.out_channels for m in head.score if isinstance(m, nn.Conv2d)]
    assert widths == [256, 128, 64, 32, 1]
    assert [m.out_channels for m in head.offset if isinstance(m, nn.Conv2d)][-1] == 2
    assert sum(isinstance(m, nn.BatchNorm2d) for m in head.size) == 4
    with torch.no_grad():
        score, offset, size = head(torch.randn(2, 48, 16, 16) * 50)
    assert score.shape == (2, 1, 16, 16) and offset.shape == (2, 2, 16, 16) and size.shape == (2, 2, 16, 16)
    for tensor in (score, size):
        assert float(tensor.min()) >= 1e-4 and float(tensor.max()) <= 1 - 1e-4
    with pytest.raises(ValueError, match="head_channels"):
        CenterPredictor(in_channels=48, head_channels=4)
