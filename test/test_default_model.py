"""The shipped default model: present, pruned with BDMs, and it really tracks.

These guard the file in abtrack_ros/resources/ that the node, the demo and the CLI use when no
checkpoint is given: a broken, untrained or swapped file fails here.
"""
import numpy as np
import pytest

from abtrack_ros.data import generate_synthetic, load_frame, open_dataset
from abtrack_ros.evaluation.metrics import SequenceScores, overall_summary
from abtrack_ros.model import default_checkpoint_path, load_checkpoint
from abtrack_ros.tracking import Tracker

# A sequence set never used in training (the recipe uses seeds 1000-1002, 8001 and 9001).
TEST_SEED = 4242


@pytest.fixture(scope="module")
def sequences(tmp_path_factory):
    root = tmp_path_factory.mktemp("default_model")
    generate_synthetic(root, num_sequences=3, num_frames=40, seed=TEST_SEED, difficulty="easy", split="val")
    return open_dataset(f"synthetic:{root}", split="val")


def test_default_checkpoint_ships_pruned_with_bdms():
    path = default_checkpoint_path()
    assert path is not None and path.is_file(), "abtrack_ros/resources/default_model.pt is missing"
    model, cfg, extra = load_checkpoint(path)
    assert model.pruning_plan is not None and model.bdm_enabled and not model.has_vtp_masks
    assert cfg.model.backbone == "deit_tiny_patch16_224"
    assert extra["stage"] == "bdm"


def test_default_model_tracks_and_bypasses(sequences):
    tracker = Tracker.from_checkpoint(None)
    assert not tracker.weights_description.startswith("UNTRAINED")
    parts, executed = [], []
    for seq in sequences:
        frames = [load_frame(f) for f in seq.frames]
        tracker.initialize(frames[0], seq.boxes[0])
        boxes = [seq.boxes[0]]
        for frame in frames[1:]:
            result = tracker.track(frame)
            boxes.append(result.box)
            executed.append(result.blocks_executed)
        parts.append(SequenceScores.compute(np.array(boxes), seq.boxes, seq.visible))
    summary = overall_summary(parts)
    # The shipped model scores 0.86 here (the previous release 0.83), in any checkout: the
    # generated sequences no longer depend on its path. Random weights of the same architecture
    # score 0.07 and 0.08 (two seeds).
    assert summary["auc"] > 0.5, summary
    assert np.mean(executed) < tracker.num_blocks  # the BDMs bypass blocks on real frames
