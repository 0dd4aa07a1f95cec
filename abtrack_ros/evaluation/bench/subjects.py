"""What the bench times: the three models of the ablation from one checkpoint, and one synthetic
sequence with the template/search patches cut from it as when tracking (docs/tracking.md)."""
from __future__ import annotations

import copy
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Union

import numpy as np
import torch

from abtrack_ros.config import TrackerConfig
from abtrack_ros.tracking import geometry as geo
from abtrack_ros.tracking.tracker import load_model_or_untrained

CONFIG_NAMES = ("baseline", "bdm", "bdm_vtp")
BENCH_SEED = 0
BENCH_FRAME_SIZE = (320, 240)


@dataclass
class BenchModels:
    """The three models of the ablation, all on the same backbone."""

    baseline: torch.nn.Module
    bdm: torch.nn.Module
    bdm_vtp: torch.nn.Module
    weights: str
    notes: list[str] = field(default_factory=list)

    def named(self) -> list[tuple[str, torch.nn.Module]]:
        return list(zip(CONFIG_NAMES, (self.baseline, self.bdm, self.bdm_vtp)))


def copy_matching_weights(source: torch.nn.Module, target: torch.nn.Module) -> int:
    """Copy every tensor whose name and shape match (the others keep their init); returns the count."""
    target_state = target.state_dict()
    matching = {k: v for k, v in source.state_dict().items() if k in target_state and target_state[k].shape == v.shape}
    target.load_state_dict(matching, strict=False)
    return len(matching)


def build_bench_models(checkpoint: Union[str, Path, None]) -> BenchModels:
    """baseline / bdm / bdm_vtp from one checkpoint file or exported folder (None = the default model)."""
    from abtrack_ros import model as model_api
    from abtrack_ros.backends import resolve_checkpoint

    model, cfg, weights = load_model_or_untrained(resolve_checkpoint(checkpoint)[0])
    notes = []
    if model.pruning_plan is not None:
        bdm_vtp = model
        unpruned = model_api.build_model(replace(cfg.model, pretrained=None, vtp_masks=False, bdm=True))
        copied = copy_matching_weights(model, unpruned)
        notes.append(
            "checkpoint is pruned: bdm and baseline are an unpruned model of the same backbone holding the "
            f"{copied} checkpoint tensors whose shapes still fit (embeddings, norms, BDMs, head; not the "
            "sliced block matrices): timing only"
        )
    else:
        unpruned = model
        bdm_vtp = copy.deepcopy(model)
        if not bdm_vtp.has_vtp_masks:
            bdm_vtp.add_vtp_masks()
            notes.append("checkpoint has no VTP masks: bdm_vtp is pruned from all-ones masks (timing only)")
        model_api.prune_model(bdm_vtp, cfg.model.prune_ratio)
        notes.append(f"bdm_vtp = the checkpoint pruned here with ratio {cfg.model.prune_ratio}")
    baseline = copy.deepcopy(unpruned)
    baseline.bdm_enabled = False
    unpruned.bdm_enabled = True
    bdm_vtp.bdm_enabled = True
    for m in (baseline, unpruned, bdm_vtp):
        m.set_forced_pattern(None)
    return BenchModels(baseline=baseline, bdm=unpruned, bdm_vtp=bdm_vtp, weights=weights, notes=notes)


@dataclass
class BenchSequence:
    """Real frames with their boxes, and the template/search patches cut from them as when tracking."""

    frames: list[np.ndarray]
    boxes: np.ndarray
    template_patch: np.ndarray
    search_patches: list[np.ndarray]

    @classmethod
    def generate(cls, num_frames: int, template_size: int, search_size: int, cfg: TrackerConfig) -> "BenchSequence":
        from abtrack_ros.data import generate_synthetic, load_frame, open_dataset

        with tempfile.TemporaryDirectory(prefix="abtrack_bench_") as tmp:
            generate_synthetic(tmp, 1, num_frames, BENCH_SEED, size=BENCH_FRAME_SIZE, real_images="off")
            sequence = open_dataset(f"synthetic:{tmp}", "train")[0]
            frames = [load_frame(p) for p in sequence.frames]
        boxes = sequence.boxes
        template_window = geo.crop_window(
            geo.box_center(boxes[0]), geo.crop_side(boxes[0], cfg.template_factor), template_size
        )
        searches = []
        for i in range(1, len(frames)):  # search around the previous box, as the tracker does
            window = geo.crop_window(
                geo.box_center(boxes[i - 1]), geo.crop_side(boxes[i - 1], cfg.search_factor), search_size
            )
            searches.append(geo.crop_patch(frames[i], window))
        return cls(frames, boxes, geo.crop_patch(frames[0], template_window), searches)
