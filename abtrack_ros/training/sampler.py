"""Template/search pair sampling with augmentation, as in one-stream trackers.

Pair ``k`` of epoch ``e`` is drawn from its own random generator seeded by ``(seed, e, k)``:
it does not depend on the worker that builds it, on the number of GPUs or on what was sampled
before, so a resumed run sees exactly the pairs an uninterrupted run would have seen.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator, Sequence as SequenceType

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from abtrack_ros.config import ABTrackConfig
from abtrack_ros.data import Sequence, load_frame, valid_boxes
from abtrack_ros.training.degrade import degrade
from abtrack_ros.tracking.tracker import PatchNormaliser
from abtrack_ros.tracking.geometry import (
    CropWindow,
    box_center,
    box_to_crop,
    crop_patch,
    crop_side,
    crop_window,
)

# The target centre stays at least this far (fraction of the side) inside the search crop.
CENTRE_MARGIN = 0.05
# Validation pairs come from a stream disjoint from every training epoch.
VALIDATION_STREAM = 2**31 - 1
# Sampling a pair retries on sequences whose visible frames cannot form one.
MAX_DRAWS_PER_PAIR = 100


class EmptyDatasetError(ValueError):
    """A training source without a single usable (visible, finite, non-empty) box."""


@dataclass
class WeightedSource:
    """The sequences of one dataset and its mixing weight."""

    name: str
    sequences: list[Sequence]
    weight: float


@dataclass(frozen=True)
class PairSettings:
    """Crop geometry and augmentation of a pair (from the model, tracker and train sections)."""

    template_size: int
    search_size: int
    template_factor: float
    search_factor: float
    max_frame_gap: int
    scale_jitter: float
    centre_jitter: float
    grayscale_prob: float
    flip_prob: float
    brightness_jitter: float
    negative_prob: float = 0.0  # share of pairs whose search crop leaves the target out (training only)
    degrade_prob: float = 0.0  # share of crops (template and search drawn apart) degraded as by a camera
    # False (validation): no scale jitter, flip, grayscale or brightness; the centre jitter stays,
    # so the target is not always in the middle of the search crop, as when tracking.
    augment: bool = True

    @classmethod
    def from_config(cls, cfg: ABTrackConfig, augment: bool = True) -> "PairSettings":
        t = cfg.train
        return cls(
            template_size=cfg.model.template_size,
            search_size=cfg.model.search_size,
            template_factor=cfg.tracker.template_factor,
            search_factor=cfg.tracker.search_factor,
            max_frame_gap=t.max_frame_gap,
            scale_jitter=t.search_jitter_scale,
            centre_jitter=t.search_jitter_center,
            grayscale_prob=t.grayscale_prob,
            flip_prob=t.flip_prob,
            brightness_jitter=t.brightness_jitter,
            negative_prob=t.negative_pair_prob if augment else 0.0,
            degrade_prob=t.degrade_prob if augment else 0.0,
            augment=augment,
        )


def usable_frames(seq: Sequence) -> np.ndarray:
    """Indices of frames whose box is visible, finite and of positive size (sorted)."""
    return np.flatnonzero(np.asarray(seq.visible, dtype=bool) & valid_boxes(seq.boxes))


_NORMALISE = PatchNormaliser(torch.device("cpu"), torch.float32)


def to_model_tensor(image: np.ndarray, brightness: float = 1.0) -> torch.Tensor:
    """RGB uint8 ``H x W x 3`` -> ImageNet-normalised float ``3 x H x W`` (brightness scaled first,
    then normalised exactly as the tracker does)."""
    scaled = np.clip(image.astype(np.float32) * np.float32(brightness), 0.0, 255.0)
    return _NORMALISE(scaled)[0]


def jittered_search_window(box: np.ndarray, s: PairSettings, rng: np.random.Generator):
    """Search crop around a randomly rescaled and shifted box; the target centre stays inside."""
    size = box[2:4] * (np.exp(rng.standard_normal(2) * s.scale_jitter) if s.augment else 1.0)
    extent = math.sqrt(float(size[0] * size[1]))
    cx, cy = box_center(box)
    offset = extent * s.centre_jitter * (rng.random(2) - 0.5)
    side = extent * s.search_factor
    limit = side * (0.5 - CENTRE_MARGIN)
    centre = (cx + float(np.clip(offset[0], -limit, limit)), cy + float(np.clip(offset[1], -limit, limit)))
    return crop_window(centre, side, s.search_size)


def window_beside(box: np.ndarray, side: float, out_size: int, frame_w: int, frame_h: int,
                  rng: np.random.Generator) -> CropWindow:
    """A square window of ``side`` image pixels that leaves ``box`` entirely out: next to it on a
    random side (left, right, above or below), up to half a side farther and shifted across by up
    to half a side; sides whose window centre stays in the frame are preferred (they hold the
    scene, with its background and look-alikes, rather than the zero padding)."""
    cx, cy = box_center(box)
    # Centre distance at which the window just clears the box along x / y, plus a pixel.
    clear = (side + np.asarray(box[2:4], dtype=np.float64)) / 2.0 + 1.0
    candidates = []
    for axis, sign in ((0, -1.0), (0, 1.0), (1, -1.0), (1, 1.0)):
        along = sign * (clear[axis] + rng.uniform(0.0, 0.5) * side)
        across = rng.uniform(-0.5, 0.5) * side
        candidates.append((cx + along, cy + across) if axis == 0 else (cx + across, cy + along))
    inside = [c for c in candidates if 0 <= c[0] < frame_w and 0 <= c[1] < frame_h]
    pool = inside or candidates
    return crop_window(pool[int(rng.integers(len(pool)))], side, out_size)


class PairDataset(Dataset):
    """Map-style dataset of training pairs indexed by ``(epoch, k)``.

    Each item is a dict: ``template`` 3,T,T and ``search`` 3,S,S normalised float tensors,
    ``box`` (4,) the target ``[cx, cy, w, h]`` normalised in the search crop and ``present``
    (1.0, or 0.0 for a negative pair whose search crop leaves the target out; its box is zeros).
    """

    def __init__(
        self, sources: list[WeightedSource], settings: PairSettings, seed: int
    ) -> None:
        if not sources:
            raise EmptyDatasetError("no training datasets given (use --data FORMAT:PATH or train.datasets)")
        self.settings = settings
        self.seed = int(seed)
        self.sources: list[WeightedSource] = []
        self.frames: list[list[np.ndarray]] = []
        for src in sources:
            if src.weight <= 0:
                raise ValueError(f"dataset {src.name}: sampling weight must be positive, got {src.weight}")
            kept = [(seq, usable_frames(seq)) for seq in src.sequences]
            kept = [(seq, idx) for seq, idx in kept if idx.size > 0]
            if not kept:
                raise EmptyDatasetError(
                    f"dataset {src.name}: no sequence has a visible, non-empty box "
                    f"({len(src.sequences)} sequences read)"
                )
            self.sources.append(WeightedSource(src.name, [seq for seq, _ in kept], src.weight))
            self.frames.append([idx for _, idx in kept])
        weights = np.array([src.weight for src in self.sources], dtype=np.float64)
        self.mixing = weights / weights.sum()

    def rng_for(self, epoch: int, k: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, int(epoch), int(k)])

    def __getitem__(self, item: tuple[int, int]) -> dict[str, torch.Tensor]:
        epoch, k = item
        rng = self.rng_for(epoch, k)
        for _ in range(MAX_DRAWS_PER_PAIR):
            pair = self._draw(rng)
            if pair is not None:
                return pair
        raise EmptyDatasetError(f"could not draw a valid pair for item {item} in {MAX_DRAWS_PER_PAIR} tries")

    def _draw(self, rng: np.random.Generator) -> dict[str, torch.Tensor] | None:
        s = self.settings
        src_idx = int(rng.choice(len(self.sources), p=self.mixing))
        seq_idx = int(rng.integers(len(self.sources[src_idx].sequences)))
        seq = self.sources[src_idx].sequences[seq_idx]
        usable = self.frames[src_idx][seq_idx]
        t_idx = int(usable[rng.integers(usable.size)])
        lo, hi = np.searchsorted(usable, [t_idx - s.max_frame_gap, t_idx + s.max_frame_gap + 1])
        s_idx = int(usable[rng.integers(lo, hi)])
        t_box = np.asarray(seq.boxes[t_idx], dtype=np.float64)
        s_box = np.asarray(seq.boxes[s_idx], dtype=np.float64)
        t_window = crop_window(box_center(t_box), crop_side(t_box, s.template_factor), s.template_size)
        s_window = jittered_search_window(s_box, s, rng)
        target = box_to_crop(s_box, s_window)
        if not (target[2] > 0 and target[3] > 0):
            return None
        search_frame = load_frame(seq.frames[s_idx])
        # Drawn only when negatives are on, so runs without them keep their random streams.
        present = not (s.negative_prob > 0 and rng.random() < s.negative_prob)
        if not present:
            s_window = window_beside(s_box, s_window.side, s.search_size, search_frame.shape[1],
                                     search_frame.shape[0], rng)
            target = np.zeros(4)
        template = crop_patch(load_frame(seq.frames[t_idx]), t_window)
        search = crop_patch(search_frame, s_window)
        brightness = (1.0, 1.0)
        if s.augment:
            # Grayscale and flip apply to the pair jointly; brightness to each image.
            if rng.random() < s.grayscale_prob:
                template, search = (_grayscale(template), _grayscale(search))
            if rng.random() < s.flip_prob:
                template, search = template[:, ::-1], search[:, ::-1]
                if present:
                    target[0] = 1.0 - target[0]
            low = max(0.0, 1.0 - s.brightness_jitter)
            brightness = tuple(rng.uniform(low, 1.0 + s.brightness_jitter, size=2))
            if s.degrade_prob > 0:  # drawn only when on, so runs without it keep their random streams
                if rng.random() < s.degrade_prob:
                    template = degrade(template, rng)
                if rng.random() < s.degrade_prob:
                    search = degrade(search, rng)
        return {
            "template": to_model_tensor(template, brightness[0]),
            "search": to_model_tensor(search, brightness[1]),
            "box": torch.tensor(target, dtype=torch.float32),
            "present": torch.tensor(1.0 if present else 0.0),
        }


def _grayscale(image: np.ndarray) -> np.ndarray:
    gray = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)
    return np.repeat(gray[:, :, None], 3, axis=2)


class EpochShardSampler(Sampler):
    """Yields ``(epoch, k)`` for this rank's share of the epoch (k = rank, rank + W, ...).

    The remainder ``pairs_per_epoch % world_size`` is dropped so every rank runs the same
    number of steps (required by DistributedDataParallel).
    """

    def __init__(self, pairs_per_epoch: int, rank: int = 0, world_size: int = 1) -> None:
        if pairs_per_epoch < world_size:
            raise ValueError(f"pairs_per_epoch ({pairs_per_epoch}) must be >= the number of processes ({world_size})")
        self.per_rank = pairs_per_epoch // world_size
        self.rank, self.world_size = rank, world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[tuple[int, int]]:
        for i in range(self.per_rank):
            yield (self.epoch, self.rank + i * self.world_size)

    def __len__(self) -> int:
        return self.per_rank


class FixedItemsSampler(Sampler):
    """Yields a fixed list of ``(stream, k)`` items (validation pairs)."""

    def __init__(self, items: SequenceType[tuple[int, int]]) -> None:
        self.items = list(items)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)
