"""Pair sampler: crops, targets, augmentation, frame gaps, mixing, reproducibility, sharding."""
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from abtrack_ros.data.sequence import Sequence
from abtrack_ros.tracking.geometry import IMAGENET_MEAN, IMAGENET_STD
from abtrack_ros.training.sampler import (
    CENTRE_MARGIN,
    EmptyDatasetError,
    EpochShardSampler,
    PairDataset,
    PairSettings,
    WeightedSource,
)

FRAME = 96


def settings(**changes) -> PairSettings:
    base = dict(
        template_size=32, search_size=64, template_factor=2.0, search_factor=4.0, max_frame_gap=100,
        scale_jitter=0.25, centre_jitter=3.0, grayscale_prob=0.0, flip_prob=0.5, brightness_jitter=0.0,
    )
    base.update(changes)
    return PairSettings(**base)


def write_sequence(folder: Path, name: str, colours: list[tuple[int, int, int]], visible=None) -> Sequence:
    """Black frames with one coloured 12x12 square moving right by 2 px a frame."""
    folder = folder / name
    folder.mkdir(parents=True)
    frames, boxes = [], []
    for i, colour in enumerate(colours):
        image = np.zeros((FRAME, FRAME, 3), np.uint8)
        x, y = 30 + 2 * i, 40
        image[y:y + 12, x:x + 12] = colour
        path = folder / f"{i + 1:08d}.png"
        cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        frames.append(path)
        boxes.append([x, y, 12, 12])
    visible = np.ones(len(colours), bool) if visible is None else np.asarray(visible)
    return Sequence(name, frames, np.array(boxes, float), visible, "test")


def rgb(tensor: torch.Tensor) -> np.ndarray:
    return tensor.numpy().transpose(1, 2, 0) * IMAGENET_STD + IMAGENET_MEAN


def pixel_at(image: np.ndarray, cx: float, cy: float) -> np.ndarray:
    side = image.shape[0]
    return image[int(cy * side), int(cx * side)]


def test_target_box_points_at_the_target_under_jitter_and_flip(tmp_path):
    seq = write_sequence(tmp_path, "a", [(255, 0, 0)] * 6)
    data = PairDataset([WeightedSource("a", [seq], 1.0)], settings(), seed=1)
    for k in range(30):
        pair = data[(0, k)]
        assert pair["template"].shape == (3, 32, 32) and pair["search"].shape == (3, 64, 64)
        cx, cy, w, h = pair["box"].tolist()
        assert CENTRE_MARGIN <= cx <= 1 - CENTRE_MARGIN and CENTRE_MARGIN <= cy <= 1 - CENTRE_MARGIN
        assert pixel_at(rgb(pair["search"]), cx, cy) == pytest.approx([1.0, 0.0, 0.0], abs=0.02)
        # The template is centred on the target, which spans 1/factor of the crop.
        assert pixel_at(rgb(pair["template"]), 0.5, 0.5) == pytest.approx([1.0, 0.0, 0.0], abs=0.02)


def test_without_augmentation_the_search_crop_is_centred(tmp_path):
    seq = write_sequence(tmp_path, "a", [(0, 255, 0)] * 3)
    data = PairDataset([WeightedSource("a", [seq], 1.0)], settings(augment=False, centre_jitter=0.0), seed=0)
    box = data[(0, 0)]["box"].tolist()
    assert box == pytest.approx([0.5, 0.5, 0.25, 0.25], abs=1e-6)


def test_flip_mirrors_the_box(tmp_path):
    # An asymmetric sequence (target left of centre) with flip always on and no jitter.
    seq = write_sequence(tmp_path, "a", [(0, 0, 255)] * 2)
    fixed = dict(scale_jitter=0.0, centre_jitter=0.0)
    plain = PairDataset([WeightedSource("a", [seq], 1.0)], settings(flip_prob=0.0, **fixed), seed=3)[(0, 0)]
    mirrored = PairDataset([WeightedSource("a", [seq], 1.0)], settings(flip_prob=1.0, **fixed), seed=3)[(0, 0)]
    assert torch.allclose(mirrored["search"], plain["search"].flip(-1))
    assert mirrored["box"][0].item() == pytest.approx(1.0 - plain["box"][0].item())


def test_grayscale_gives_equal_channels(tmp_path):
    seq = write_sequence(tmp_path, "a", [(255, 40, 0)] * 2)
    pair = PairDataset([WeightedSource("a", [seq], 1.0)], settings(grayscale_prob=1.0), seed=0)[(0, 0)]
    image = rgb(pair["search"])
    assert np.allclose(image[..., 0], image[..., 1], atol=1e-5) and np.allclose(image[..., 1], image[..., 2], atol=1e-5)


def test_frame_gap_and_invisible_frames(tmp_path):
    # Frame i has red level 50 + 20 i; frames 2 and 5 are invisible (level 90 and 150).
    colours = [(50 + 20 * i, 0, 0) for i in range(8)]
    visible = [True, True, False, True, True, False, True, True]
    seq = write_sequence(tmp_path, "a", colours, visible)
    data = PairDataset([WeightedSource("a", [seq], 1.0)], settings(max_frame_gap=1, flip_prob=0.0), seed=5)
    for k in range(40):
        pair = data[(0, k)]
        t_level = pixel_at(rgb(pair["template"]), 0.5, 0.5)[0] * 255
        s_level = pixel_at(rgb(pair["search"]), *pair["box"][:2].tolist())[0] * 255
        t_frame, s_frame = round((t_level - 50) / 20), round((s_level - 50) / 20)
        assert abs(t_frame - s_frame) <= 1
        assert t_frame not in (2, 5) and s_frame not in (2, 5)


def test_mixing_ratio_follows_the_weights(tmp_path):
    red = write_sequence(tmp_path, "red", [(255, 0, 0)] * 2)
    green = write_sequence(tmp_path, "green", [(0, 255, 0)] * 2)
    data = PairDataset(
        [WeightedSource("red", [red], 3.0), WeightedSource("green", [green], 1.0)],
        settings(augment=False), seed=0,
    )
    reds = sum(pixel_at(rgb(data[(0, k)]["template"]), 0.5, 0.5)[0] > 0.5 for k in range(200))
    assert 0.65 < reds / 200 < 0.85


def test_pairs_depend_only_on_seed_epoch_and_index(tmp_path):
    seqs = [write_sequence(tmp_path, f"s{i}", [(40 * i, 200, 100)] * 10) for i in range(3)]
    a = PairDataset([WeightedSource("s", seqs, 1.0)], settings(brightness_jitter=0.2), seed=7)
    b = PairDataset([WeightedSource("s", seqs, 1.0)], settings(brightness_jitter=0.2), seed=7)
    later_first = b[(1, 4)]
    assert torch.equal(a[(1, 4)]["search"], later_first["search"])
    assert torch.equal(a[(0, 0)]["box"], b[(0, 0)]["box"])
    assert not torch.equal(a[(0, 4)]["search"], a[(1, 4)]["search"])
    c = PairDataset([WeightedSource("s", seqs, 1.0)], settings(brightness_jitter=0.2), seed=8)
    assert not torch.equal(a[(0, 0)]["search"], c[(0, 0)]["search"])


def test_empty_dataset_errors(tmp_path):
    seq = write_sequence(tmp_path, "a", [(255, 0, 0)] * 3, visible=[False] * 3)
    with pytest.raises(EmptyDatasetError, match="no sequence has a visible"):
        PairDataset([WeightedSource("a", [seq], 1.0)], settings(), seed=0)
    with pytest.raises(EmptyDatasetError, match="no training datasets"):
        PairDataset([], settings(), seed=0)


def test_shards_split_the_epoch_between_ranks():
    shards = [list(EpochShardSampler(10, rank, 3)) for rank in range(3)]
    assert all(len(s) == 3 for s in shards)
    ks = sorted(k for shard in shards for _, k in shard)
    assert ks == list(range(9))
    sampler = EpochShardSampler(10, 0, 1)
    sampler.set_epoch(4)
    assert list(sampler)[:2] == [(4, 0), (4, 1)]
    with pytest.raises(ValueError):
        EpochShardSampler(1, 0, 2)


def test_loader_workers_do_not_change_the_pairs(tmp_path):
    seqs = [write_sequence(tmp_path, f"s{i}", [(40 * i, 200, 100)] * 6) for i in range(2)]
    data = PairDataset([WeightedSource("s", seqs, 1.0)], settings(brightness_jitter=0.2), seed=3)
    sampler = EpochShardSampler(6, rank=1, world_size=2)
    sampler.set_epoch(2)
    loader = torch.utils.data.DataLoader(data, batch_size=3, sampler=sampler, num_workers=2)
    (batch,) = list(loader)
    direct = torch.stack([data[(2, k)]["search"] for k in (1, 3, 5)])
    assert torch.equal(batch["search"], direct)


def test_negative_pairs_leave_the_target_out_of_the_search_crop(tmp_path):
    seq = write_sequence(tmp_path, "a", [(255, 0, 0)] * 6)
    data = PairDataset([WeightedSource("a", [seq], 1.0)], settings(negative_prob=0.5), seed=3)
    pairs = [data[(0, k)] for k in range(60)]
    negatives = [p for p in pairs if p["present"].item() == 0.0]
    positives = [p for p in pairs if p["present"].item() == 1.0]
    assert 15 <= len(negatives) <= 45 and len(negatives) + len(positives) == 60
    for pair in negatives:
        assert pair["box"].tolist() == [0.0, 0.0, 0.0, 0.0]
        image = rgb(pair["search"])
        red = (image[..., 0] > 0.5) & (image[..., 1] < 0.3) & (image[..., 2] < 0.3)
        assert not red.any(), "a negative search crop shows the target"
        # the template still shows it
        assert pixel_at(rgb(pair["template"]), 0.5, 0.5) == pytest.approx([1.0, 0.0, 0.0], abs=0.02)
    for pair in positives:
        cx, cy = pair["box"].tolist()[:2]
        assert pixel_at(rgb(pair["search"]), cx, cy) == pytest.approx([1.0, 0.0, 0.0], abs=0.02)


def test_validation_pairs_have_no_negatives(tmp_path):
    from abtrack_ros.config import ABTrackConfig

    cfg = ABTrackConfig()
    cfg.train.negative_pair_prob = 0.5
    assert PairSettings.from_config(cfg).negative_prob == 0.5
    assert PairSettings.from_config(cfg, augment=False).negative_prob == 0.0


def test_window_beside_never_holds_the_box():
    from abtrack_ros.training.sampler import window_beside
    from abtrack_ros.tracking.geometry import box_to_crop

    rng = np.random.default_rng(0)
    for _ in range(300):
        w, h = rng.uniform(5, 80, 2)
        box = np.array([rng.uniform(0, 300), rng.uniform(0, 200), w, h])
        side = float(np.sqrt(w * h) * rng.uniform(2, 5))
        window = window_beside(box, side, 64, 320, 240, rng)
        assert window.side == pytest.approx(side)
        cx, cy, cw, ch = box_to_crop(box, window)
        assert cx + cw / 2 <= 0 or cx - cw / 2 >= 1 or cy + ch / 2 <= 0 or cy - ch / 2 >= 1
    # a box in the middle of a large frame: the window's centre stays in the frame
    for _ in range(50):
        window = window_beside(np.array([300, 200, 20, 20]), 80.0, 64, 640, 480, rng)
        centre = (window.x0 + window.side / 2, window.y0 + window.side / 2)
        assert 0 <= centre[0] < 640 and 0 <= centre[1] < 480


def test_pairs_without_negatives_are_those_of_the_code_before_them(tmp_path):
    """negative_prob 0 draws no extra random number: the boxes of these pairs were recorded with
    the sampler as it was before negative pairs existed (commit db798b7)."""
    seq = write_sequence(tmp_path, "a", [(255, 0, 0)] * 6)
    data = PairDataset([WeightedSource("a", [seq], 1.0)], settings(), seed=5)
    recorded = [[0.528453, 0.487028, 0.261744, 0.261744], [0.827078, 0.413884, 0.19402, 0.19402],
                [0.367664, 0.195697, 0.254335, 0.254335], [0.517964, 0.677616, 0.257621, 0.257621],
                [0.219686, 0.739142, 0.300655, 0.300655], [0.179206, 0.175612, 0.314622, 0.314622]]
    for k, box in enumerate(recorded):
        assert data[(1, k)]["box"].tolist() == pytest.approx(box, abs=2e-6)
