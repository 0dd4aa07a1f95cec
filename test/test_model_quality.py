"""The quality head: per-cell expected IoU, added to trained models, run by every backend and read
by the tracker's confidence."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from abtrack_ros.backends import OnnxRuntimeBackend, TorchBackend
from abtrack_ros.config import ABTrackConfig, ConfidenceWeights, TrackerConfig
from abtrack_ros.model import load_checkpoint, prune_model, save_checkpoint
from abtrack_ros.tracking import Tracker
from abtrack_ros.tracking.confidence import combine, peak_logit
from test_model_support import images, small_model

HEIGHT, WIDTH = 96, 128


def _trained_looking_quality(model) -> None:
    """Non-zero output weights, as after training (a fresh head predicts 0.5 everywhere)."""
    generator = torch.Generator().manual_seed(5)
    with torch.no_grad():
        model.quality.out.weight.copy_(torch.randn(model.quality.out.weight.shape, generator=generator))


def test_a_fresh_quality_head_predicts_one_half_and_changes_nothing_else():
    model = small_model(bdm=True)
    template, search = images(model.config, batch=2)
    with torch.no_grad():
        before = model(template, search)
    assert before.quality_map is None
    model.add_quality_head()
    assert model.config.quality_head and model.quality is not None
    with torch.no_grad():
        after = model(template, search)
    assert tuple(after.quality_map.shape) == (2, 1, 4, 4)
    assert torch.allclose(after.quality_map, torch.full_like(after.quality_map, 0.5))
    for name in ("score_map", "boxes", "scores", "bypass_probs"):
        assert torch.equal(getattr(after, name), getattr(before, name)), name


def test_quality_gradient_reaches_the_backbone():
    model = small_model(quality_head=True)
    _trained_looking_quality(model)
    model.train()
    template, search = images(model.config, batch=2)
    model(template, search).quality_map.sum().backward()
    assert float(model.quality.hidden.weight.grad.abs().sum()) > 0
    assert float(model.backbone.blocks[-1].mlp.fc2.weight.grad.abs().sum()) > 0


def test_a_confidently_wrong_quality_still_learns_under_bf16_autocast():
    from abtrack_ros.model import QualityHead
    from abtrack_ros.training.losses import quality_loss

    head = QualityHead(8)
    with torch.no_grad():
        head.out.bias.fill_(8.0)  # p = 0.9997: rounds to exactly 1.0 in bf16
    features = torch.randn(1, 8, 2, 2, generator=torch.Generator().manual_seed(0))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        quality = head(features)
    assert quality.dtype == torch.float32 and float(quality.detach().max()) < 1.0
    offset, size = torch.zeros(1, 2, 2, 2), torch.full((1, 2, 2, 2), 0.2)
    target = torch.tensor([[0.9, 0.9, 0.05, 0.05]])  # far from every cell's box: IoU 0 everywhere
    quality_loss(quality, torch.full((1, 1, 2, 2), 0.5), offset, size, target).backward()
    assert float(head.out.bias.grad) > 0.1


def test_quality_head_is_saved_and_rebuilt(tmp_path):
    model = small_model(bdm=True, quality_head=True)
    _trained_looking_quality(model)
    save_checkpoint(tmp_path / "m.pt", model, ABTrackConfig(model=model.config))
    loaded, cfg, _ = load_checkpoint(tmp_path / "m.pt")
    assert cfg.model.quality_head and loaded.quality is not None
    template, search = images(model.config, batch=2)
    with torch.no_grad():
        assert torch.equal(loaded.eval()(template, search).quality_map, model(template, search).quality_map)


@pytest.fixture(scope="module")
def pruned_with_quality():
    model = small_model(bdm=True, vtp_masks=True, quality_head=True, depth=3, n_enf=1)
    _trained_looking_quality(model)
    prune_model(model, 0.3)
    return model.eval()


def test_every_backend_returns_the_same_quality_map(pruned_with_quality, tmp_path):
    model = pruned_with_quality
    template, search = images(model.config, batch=1, seed=4)
    with torch.inference_mode():
        reference = model(template, search).quality_map
        assert not torch.allclose(reference, torch.full_like(reference, reference.flatten()[0]))  # varies per cell
        for backend in (TorchBackend(model, torch.device("cpu")),
                        OnnxRuntimeBackend(model, threads=1, cache_dir=tmp_path)):
            out = backend.forward_embedded(backend.embed_template(template), search)
            assert torch.allclose(out.quality_map, reference, atol=1e-4), backend.name


def _frames():
    rng = np.random.default_rng(0)
    background = rng.integers(0, 80, size=(HEIGHT, WIDTH, 3), dtype=np.uint8)
    frames = []
    for i in range(3):
        frame = background.copy()
        frame[40:56, 30 + 4 * i:50 + 4 * i] = (230, 60, 40)
        frames.append(frame)
    return frames, np.array([30.0, 40.0, 20.0, 16.0])


def test_tracker_reads_the_quality_at_the_chosen_cell(pruned_with_quality):
    model = pruned_with_quality
    weights = dataclasses.replace(ConfidenceWeights(), quality_logit=2.0)
    tracker = Tracker(model, TrackerConfig(confidence=weights))
    frames, box = _frames()
    tracker.initialize(frames[0], box)
    seen = {}
    backend_forward = tracker.backend.forward_embedded

    def recording(*args):
        seen["out"] = backend_forward(*args)
        return seen["out"]

    tracker.backend.forward_embedded = recording
    result = tracker.track(frames[1])
    out = seen["out"]
    ranked = out.score_map[0, 0] * tracker._hann_window(out.score_map.shape[-1])[0, 0]
    row, col = divmod(int(torch.argmax(ranked)), ranked.shape[1])
    assert result.cues["quality_logit"] == pytest.approx(peak_logit(float(out.quality_map[0, 0, row, col])))
    assert result.cues["quality_logit"] != 0.0
    assert result.confidence == pytest.approx(combine(result.cues, weights))


def test_a_quality_weight_needs_a_model_with_a_quality_head():
    model = small_model(bdm=True)
    weights = dataclasses.replace(ConfidenceWeights(), quality_logit=1.0)
    with pytest.raises(ValueError, match="no quality head"):
        Tracker(model, TrackerConfig(confidence=weights))
    tracker = Tracker(model, TrackerConfig())
    frames, box = _frames()
    tracker.initialize(frames[0], box)
    assert tracker.track(frames[1]).cues["quality_logit"] == 0.0  # neutral without a head
