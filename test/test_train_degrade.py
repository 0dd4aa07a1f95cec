"""Camera degradations of training crops, and the sampler option that applies them."""
import numpy as np
import pytest
import torch

from abtrack_ros.training.degrade import degrade, jpeg_recompress, low_resolution, motion_blur
from abtrack_ros.training.sampler import PairDataset, PairSettings, WeightedSource
from test_train_sampler import settings, write_sequence


def _checkerboard(side: int = 32) -> np.ndarray:
    cells = (np.indices((side, side)).sum(axis=0) % 2 * 255).astype(np.uint8)
    return np.repeat(cells[:, :, None], 3, axis=2)


def _noise(side: int = 64, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(side, side, 3), dtype=np.uint8)


def test_low_resolution_keeps_the_shape_and_loses_fine_detail():
    board = _checkerboard()
    out = low_resolution(board, 0.5)
    assert out.shape == board.shape and out.dtype == np.uint8
    assert out.std() < 0.2 * board.std()  # 1-pixel cells average out
    flat = np.full((20, 30, 3), 77, np.uint8)
    np.testing.assert_array_equal(low_resolution(flat, 0.4), flat)


def test_motion_blur_smears_along_its_direction_only():
    image = np.zeros((31, 31, 3), np.uint8)
    image[15, :] = 255  # a horizontal line
    along = motion_blur(image, 7, 0.0)  # horizontal blur: the line stays sharp
    across = motion_blur(image, 7, 90.0)  # vertical blur: the line spreads over 7 rows
    assert along[15, 10, 0] > 240 and along[12, 10, 0] < 10
    assert 20 < across[15, 10, 0] < 60 and across[12, 10, 0] > 20 and across[10, 10, 0] < 10
    flat = np.full((20, 20, 3), 90, np.uint8)
    np.testing.assert_array_equal(motion_blur(flat, 9, 33.0), flat)  # the kernel sums to 1


def test_jpeg_artefacts_grow_as_the_quality_falls():
    image = _noise()
    error = {q: np.abs(jpeg_recompress(image, q).astype(int) - image).mean() for q in (95, 50, 25)}
    assert 0 < error[95] < error[50] < error[25]
    assert jpeg_recompress(image, 50).shape == image.shape


def test_degrade_is_reproducible_from_the_generator_and_sometimes_leaves_the_image():
    image = _noise()
    outs = [degrade(image, np.random.default_rng(seed)) for seed in range(40)]
    again = [degrade(image, np.random.default_rng(seed)) for seed in range(40)]
    assert all(np.array_equal(a, b) for a, b in zip(outs, again))
    unchanged = [np.array_equal(out, image) for out in outs]
    assert 0 < sum(unchanged) < 40  # each step applies with probability 1/2: all three skipped 1 in 8
    assert all(out.shape == image.shape and out.dtype == np.uint8 for out in outs)


def test_degraded_pairs_keep_their_boxes_and_change_their_crops(tmp_path):
    seq = write_sequence(tmp_path, "a", [(255, 0, 0), (0, 255, 0), (0, 0, 255)] * 2)
    plain = PairDataset([WeightedSource("a", [seq], 1.0)], settings(), seed=4)
    degraded = PairDataset([WeightedSource("a", [seq], 1.0)], settings(degrade_prob=1.0), seed=4)
    changed = 0
    for k in range(12):
        a, b = plain[(0, k)], degraded[(0, k)]
        assert torch.equal(a["box"], b["box"])  # the degradation is drawn after everything else
        changed += int(not torch.equal(a["search"], b["search"]))
    assert changed >= 6
    assert PairSettings.from_config(_config(0.3), augment=False).degrade_prob == 0.0  # never in validation
    assert PairSettings.from_config(_config(0.3)).degrade_prob == 0.3


def _config(degrade_prob: float):
    from abtrack_ros.config import ABTrackConfig

    cfg = ABTrackConfig()
    cfg.train.degrade_prob = degrade_prob
    return cfg


@pytest.mark.parametrize("value", [-0.1, 1.5])
def test_degrade_prob_is_checked(value):
    from abtrack_ros.training.trainer import TrainingError, validate_train_config

    with pytest.raises(TrainingError, match="degrade_prob"):
        validate_train_config(_config(value))
