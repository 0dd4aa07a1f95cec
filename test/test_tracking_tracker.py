"""The Tracker with a real (randomly initialised) model on drawn frames."""
import math

import numpy as np
import pytest
import torch

from abtrack_ros.config import ModelConfig, TrackerConfig
from abtrack_ros.model import build_model
from abtrack_ros.tracking import STATE_LOST, STATE_TRACKING, Tracker, TrackerNotInitializedError
from abtrack_ros.tracking import lost
from abtrack_ros.tracking.confidence import CUE_NAMES

HEIGHT, WIDTH = 96, 128


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model(ModelConfig(bdm=True))


def _frames(n=3):
    """A bright square moving right over a textured background."""
    rng = np.random.default_rng(0)
    background = rng.integers(0, 80, size=(HEIGHT, WIDTH, 3), dtype=np.uint8)
    frames, boxes = [], []
    for i in range(n):
        frame = background.copy()
        x, y = 30 + 4 * i, 40
        frame[y : y + 16, x : x + 20] = (230, 60, 40)
        frames.append(frame)
        boxes.append(np.array([x, y, 20, 16], float))
    return frames, boxes


def test_track_outputs(model):
    tracker = Tracker(model, TrackerConfig())
    frames, boxes = _frames()
    tracker.initialize(frames[0], boxes[0])
    for frame in frames[1:]:
        result = tracker.track(frame)
        x, y, w, h = result.box
        assert result.box.shape == (4,) and w > 0 and h > 0
        assert x >= 0 and y >= 0 and x + w <= WIDTH + 1e-9 and y + h <= HEIGHT + 1e-9
        assert 0.0 <= result.score <= 1.0
        assert 0.0 <= result.confidence <= 1.0
        assert set(result.cues) == set(CUE_NAMES) and all(math.isfinite(v) for v in result.cues.values())
        assert result.state in (STATE_TRACKING, STATE_LOST)
        assert result.state_reason and (result.frames_lost > 0) == (result.state == STATE_LOST)
        assert result.search_factor == TrackerConfig().search_factor
        assert len(result.executed) == len(result.bypass_probs) == model.num_blocks
        assert all(result.executed[: model.n_enf])  # enforced blocks always run
        assert result.blocks_executed == sum(result.executed)
        assert set(result.timings_ms) == {"preprocess", "model", "postprocess"}
        assert all(t >= 0 for t in result.timings_ms.values())
        if result.state == STATE_TRACKING:
            np.testing.assert_allclose(tracker.box, result.box)


def test_hann_window_choice_and_raw_score(model):
    """A strong peak at the map corner loses to a weaker central one under the Hann window, and
    the reported score is the raw map value there (not the windowed one)."""
    from abtrack_ros.model import ModelOutput
    from abtrack_ros.tracking.geometry import crop_window

    score_map = torch.full((1, 1, 16, 16), 0.1)
    score_map[0, 0, 0, 0] = 0.9
    score_map[0, 0, 7, 8] = 0.6
    offset_map = torch.full((1, 2, 16, 16), 0.5)
    size_map = torch.full((1, 2, 16, 16), 0.25)
    out = ModelOutput(
        score_map=score_map, offset_map=offset_map, size_map=size_map, boxes=torch.zeros(1, 4),
        scores=torch.zeros(1), bypass_probs=torch.zeros(1, 12), executed=torch.ones(1, 12, dtype=torch.bool),
    )
    window = crop_window((128.0, 128.0), side=256.0, out_size=256)
    decoded = Tracker(model, TrackerConfig(hann_window=True))._decode(out, window, 1000, 1000)
    assert decoded.score == pytest.approx(0.6) and decoded.peak == (7, 8)
    # cell (x=8, y=7) + offset 0.5 -> centre (8.5/16, 7.5/16) of the 256 px crop; size 0.25 * 256 = 64
    np.testing.assert_allclose(decoded.box, [8.5 * 16 - 32, 7.5 * 16 - 32, 64, 64])
    np.testing.assert_allclose(decoded.score_map, score_map[0, 0].numpy())  # raw, not windowed
    plain = Tracker(model, TrackerConfig(hann_window=False))._decode(out, window, 1000, 1000)
    assert plain.score == pytest.approx(0.9) and plain.peak == (0, 0)


def test_lost_state_with_high_threshold(model):
    frames, boxes = _frames(2)
    tracker = Tracker(model, TrackerConfig(lost_score=1.0, found_score=1.0, found_frames=1))
    tracker.initialize(frames[0], boxes[0])
    result = tracker.track(frames[1])
    assert result.state == STATE_LOST and result.state_reason in (lost.REASON_LOW_CONFIDENCE,
                                                                  lost.REASON_COMPETING_PEAK)
    assert np.isfinite(result.box).all() and result.box[2] > 0  # a box is still reported
    np.testing.assert_array_equal(tracker.box, boxes[0])  # the last trusted box stays
    tracker.cfg.lost_score = tracker.cfg.found_score = 0.0  # as the node's run-time parameters do
    result = tracker.track(frames[1])
    assert (result.state, result.state_reason) == (STATE_TRACKING, lost.REASON_REACQUIRED)
    np.testing.assert_allclose(tracker.box, result.box)


def test_reacquisition_widens_the_search_while_lost(model):
    """An injected low confidence (lost_score 1: every step is low) keeps the tracker LOST; the
    search crop grows per LOST step up to the cap, centred on the latest candidate and sized by
    the last trusted box; initialize() ends it."""
    frames, boxes = _frames(2)
    cfg = TrackerConfig(lost_score=1.0, found_score=1.0, reacquire_growth=1.5, reacquire_max_factor=8.0)
    tracker = Tracker(model, cfg)
    tracker.initialize(frames[0], boxes[0])
    steps = [tracker.track(frames[1]) for _ in range(4)]
    assert [s.search_factor for s in steps] == [4.0, 6.0, 8.0, 8.0]
    assert [s.frames_lost for s in steps] == [1, 2, 3, 4]
    assert all(s.state == STATE_LOST for s in steps)
    assert steps[0].state_reason != lost.REASON_SEARCHING
    assert all(s.state_reason == lost.REASON_SEARCHING for s in steps[1:])
    np.testing.assert_array_equal(tracker.box, boxes[0])
    np.testing.assert_allclose(tracker._previous_box, steps[-1].box)  # the next search is centred here
    tracker.initialize(frames[0], boxes[0])
    assert tracker.track(frames[1]).search_factor == 4.0


def test_bad_inputs_leave_state_unchanged(model):
    frames, boxes = _frames(2)
    tracker = Tracker(model, TrackerConfig())
    with pytest.raises(TrackerNotInitializedError):
        tracker.track(frames[0])
    tracker.initialize(frames[0], boxes[0])
    before_box = tracker.box
    before_tokens = tracker._template_tokens.clone()
    for bad_box in ([np.nan, 1, 2, 3], [0, 0, 0, 5], [500, 500, 10, 10], [1, 2, 3]):
        with pytest.raises(ValueError):
            tracker.initialize(frames[1], bad_box)
    for bad_frame in (frames[1].astype(np.float32), frames[1][..., 0], np.zeros((0, 4, 3), np.uint8), None):
        with pytest.raises(ValueError):
            tracker.track(bad_frame)
        with pytest.raises(ValueError):
            tracker.initialize(bad_frame, boxes[0])
    np.testing.assert_array_equal(tracker.box, before_box)
    assert torch.equal(tracker._template_tokens, before_tokens)


def test_reinitialise_with_new_box(model):
    frames, boxes = _frames(2)
    tracker = Tracker(model, TrackerConfig())
    tracker.initialize(frames[0], boxes[0])
    tracker.track(frames[1])
    new_box = np.array([5.0, 6.0, 30.0, 25.0])
    tracker.initialize(frames[1], new_box)
    np.testing.assert_array_equal(tracker.box, new_box)


def test_bad_construction_is_an_error(model):
    with pytest.raises(ValueError, match="CUDA"):
        Tracker(model, TrackerConfig(), device="cpu", half=True)
    with pytest.raises(ValueError, match="search_factor"):
        Tracker(model, TrackerConfig(search_factor=0.0))


def test_from_checkpoint_without_file_is_flagged(tmp_path):
    tracker = Tracker.from_checkpoint(None, cfg_overrides={"lost_score": 0.4})
    assert tracker.cfg.lost_score == 0.4
    if tracker.weights_description.startswith("UNTRAINED"):
        assert tracker.model.bdm_enabled
    with pytest.raises(ValueError):
        Tracker.from_checkpoint(None, cfg_overrides={"no_such_key": 1})


def test_from_checkpoint_file(tmp_path, model):
    from abtrack_ros.config import ABTrackConfig
    from abtrack_ros.model import save_checkpoint

    path = tmp_path / "m.pt"
    save_checkpoint(path, model, ABTrackConfig(model=ModelConfig(bdm=True)), None)
    tracker = Tracker.from_checkpoint(path)
    assert str(path) in tracker.weights_description
    frames, boxes = _frames(2)
    tracker.initialize(frames[0], boxes[0])
    reference = Tracker(model, TrackerConfig())
    reference.initialize(frames[0], boxes[0])
    np.testing.assert_allclose(tracker.track(frames[1]).box, reference.track(frames[1]).box, atol=1e-4)


def test_template_refresh_follows_its_settings(model):
    frames, boxes = _frames(5)

    def template_changes(**settings) -> list[bool]:
        tracker = Tracker(model, TrackerConfig(lost_score=0.0, found_score=0.0, **settings))
        tracker.initialize(frames[0], boxes[0])
        changes = []
        for frame in frames[1:]:
            before = tracker._template_tokens.clone()
            tracker.track(frame)
            changes.append(not torch.equal(before, tracker._template_tokens))
        return changes

    assert template_changes() == [False] * 4  # off by default: the init template stays
    assert template_changes(template_update_every=2, template_update_confidence=0.0) == [False, True, False, True]
    assert template_changes(template_update_every=1, template_update_confidence=1.0) == [False] * 4
    # the new template is the crop around the step's own box
    tracker = Tracker(model, TrackerConfig(lost_score=0.0, found_score=0.0, template_update_every=1,
                                           template_update_confidence=0.0))
    tracker.initialize(frames[0], boxes[0])
    result = tracker.track(frames[1])
    reference = Tracker(model, TrackerConfig())
    reference.initialize(frames[1], result.box)
    assert torch.equal(tracker._template_tokens, reference._template_tokens)
    # never while LOST: lost_score 1 makes every step LOST
    lost = Tracker(model, TrackerConfig(lost_score=1.0, found_score=1.0, template_update_every=1,
                                        template_update_confidence=0.0))
    lost.initialize(frames[0], boxes[0])
    before = lost._template_tokens.clone()
    for frame in frames[1:]:
        assert lost.track(frame).state == STATE_LOST
    assert torch.equal(before, lost._template_tokens)
    # a re-acquired target waits a full interval of TRACKING steps: LOST resets the count
    lost.cfg.lost_score = lost.cfg.found_score = 0.0
    lost.cfg.found_frames = 1
    lost.cfg.template_update_every = 2
    changes = []
    for frame in frames[1:4]:
        before = lost._template_tokens.clone()
        lost.track(frame)
        changes.append(not torch.equal(before, lost._template_tokens))
    assert changes == [False, True, False]
    with pytest.raises(Exception, match="template_update_every"):
        TrackerConfig(template_update_every=-1)


def test_full_depth_after_a_doubtful_step(model):
    """full_depth_below: a step after one with a lower confidence runs every block; otherwise the
    BDMs decide (threshold 0 here: every bypassable block skipped)."""
    frames, boxes = _frames(5)
    all_blocks, enforced_only = model.num_blocks, model.n_enf

    def blocks_run(full_depth_below: float, forced=None) -> list[int]:
        tracker = Tracker(model, TrackerConfig(lost_score=0.0, found_score=0.0, full_depth_below=full_depth_below))
        tracker.model.bypass_threshold = 0.0
        tracker.model.set_forced_pattern(forced)
        try:
            tracker.initialize(frames[0], boxes[0])
            counts = []
            for frame in frames[1:]:
                counts.append(tracker.track(frame).blocks_executed)
                assert tracker.model.forced_pattern == forced  # the step's own forcing is undone
            return counts
        finally:
            tracker.model.set_forced_pattern(None)
            tracker.model.bypass_threshold = 0.5

    assert blocks_run(0.0) == [enforced_only] * 4  # off: the BDMs alone
    # every confidence is below 1: all steps but the first (after init, trusted) run every block
    assert blocks_run(1.0) == [enforced_only] + [all_blocks] * 3
    # a pattern forced from outside (the evaluation's static patterns) wins
    pattern = [True] * enforced_only + [False] * (all_blocks - enforced_only)
    assert blocks_run(1.0, forced=pattern) == [enforced_only] * 4
    # initialize() starts confident again: its first step is the BDMs' own
    tracker = Tracker(model, TrackerConfig(lost_score=0.0, found_score=0.0, full_depth_below=1.0))
    tracker.model.bypass_threshold = 0.0
    try:
        tracker.initialize(frames[0], boxes[0])
        assert [tracker.track(frame).blocks_executed for frame in frames[1:3]] == [enforced_only, all_blocks]
        tracker.initialize(frames[2], boxes[2])
        assert tracker.track(frames[3]).blocks_executed == enforced_only
    finally:
        tracker.model.bypass_threshold = 0.5
    # bypass off: nothing to force, every block as always
    tracker = Tracker(model, TrackerConfig(full_depth_below=1.0))
    tracker.model.bdm_enabled = False
    try:
        tracker.initialize(frames[0], boxes[0])
        assert tracker.track(frames[1]).blocks_executed == all_blocks
    finally:
        tracker.model.bdm_enabled = True
    with pytest.raises(Exception, match="full_depth_below"):
        TrackerConfig(full_depth_below=1.5)


def test_confidence_smoothing_averages_the_logit_over_the_track(model):
    """The published confidence is the sigmoid of the moving average of the steps' own logits
    (from their cues); initialize() restarts it."""
    from abtrack_ros.tracking import confidence as conf

    frames, boxes = _frames(5)
    cfg = TrackerConfig(lost_score=0.0, found_score=0.0, confidence_smoothing=0.6)
    tracker = Tracker(model, cfg)
    tracker.initialize(frames[0], boxes[0])
    expected, differs = None, []
    for frame in frames[1:]:
        result = tracker.track(frame)
        expected = conf.smoothed_logit(expected, conf.step_logit(result.cues, cfg.confidence), 0.6)
        assert result.confidence == pytest.approx(conf.probability(expected), abs=1e-12)
        differs.append(abs(result.confidence - conf.combine(result.cues, cfg.confidence)) > 1e-6)
    assert differs[0] is False and any(differs)  # the first step is its own; later ones are averaged
    tracker.initialize(frames[0], boxes[0])
    first = tracker.track(frames[1])
    assert first.confidence == pytest.approx(conf.combine(first.cues, cfg.confidence), abs=1e-12)
