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


def _teleport_frames(count: int, gone: range, start: tuple[int, int], end: tuple[int, int]):
    """A red-and-yellow checkered target on a smooth grey-green background: at ``start`` before
    ``gone``, absent during it, at ``end`` (across the frame) after it."""
    rng = np.random.default_rng(3)
    noise = rng.integers(60, 120, size=(18, 32, 3)).astype(np.uint8)
    background = np.kron(noise, np.ones((20, 20, 1), np.uint8))  # 360 x 640
    target = np.zeros((40, 40, 3), np.uint8)
    target[:, :] = (220, 40, 30)
    target[(np.add.outer(np.arange(40) // 10, np.arange(40) // 10) % 2) == 1] = (240, 220, 40)
    frames, boxes = [], []
    for i in range(count):
        frame = background.copy()
        if i not in gone:
            x, y = start if i < gone.start else end
            frame[y:y + 40, x:x + 40] = target
            boxes.append((x, y))
        else:
            boxes.append(None)
        frames.append(frame)
    return frames, boxes


def test_frame_scan_reacquires_a_target_that_returns_elsewhere():
    """The default model loses a target that vanishes and comes back across the frame; with the
    frame scan (tracker.reacquire_scan_every) it finds it again, without it it does not."""
    gone = range(4, 10)
    frames, boxes = _teleport_frames(40, gone, start=(80, 80), end=(520, 280))

    def reacquired_at(settings: dict) -> tuple[int | None, int]:
        """(first frame re-acquired at the new place or None, steps that also searched a scan cell)."""
        tracker = Tracker.from_checkpoint(None, cfg_overrides={"lost_score": 0.45, "found_score": 0.75, **settings})
        tracker.initialize(frames[0], np.array([80.0, 80.0, 40.0, 40.0]))
        lost_seen, scans = False, 0
        for i in range(1, len(frames)):
            result = tracker.track(frames[i])
            lost_seen |= result.state == "LOST"
            scans += result.scanned
            x, y = result.box[:2]
            if lost_seen and i >= gone.stop and result.state == "TRACKING" and abs(x - 520) < 12 and abs(y - 280) < 12:
                return i, scans
        assert lost_seen, "the target vanished but the tracker never reported LOST"
        return None, scans

    assert reacquired_at({}) == (None, 0)  # the search stays around the last place
    found, scans = reacquired_at({"reacquire_scan_every": 1, "reacquire_scan_after": 3})
    assert found is not None and scans > 0
