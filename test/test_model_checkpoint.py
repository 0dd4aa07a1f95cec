"""Checkpoints: exact round trips, fp16 storage, and clear errors for bad files."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from abtrack_ros.config import ABTrackConfig
from abtrack_ros.model import CheckpointError, load_checkpoint, prune_model, save_checkpoint
from abtrack_ros.model import checkpoint as checkpoint_module
from test_model_support import images, small_config, small_model


class NotPlainData:
    """A custom class: pickling it makes a file weights_only loading must refuse."""

    def __init__(self):
        self.value = 3


def _pruned_bdm_model():
    model = small_model(vtp_masks=True)
    gen = torch.Generator().manual_seed(8)
    with torch.no_grad():
        for block in model.backbone.blocks:
            for mask in (block.attn.inner_mask, block.mlp.hidden_mask):
                mask.copy_(torch.rand(mask.shape, generator=gen) + 0.2)
    prune_model(model, 0.3)
    model.bdm_enabled = True
    with torch.no_grad():  # input-dependent BDMs so that some blocks are skipped
        for decision in model.backbone.decisions:
            decision.linear.weight.copy_(torch.randn(decision.linear.weight.shape, generator=gen) * 3)
            decision.linear.bias.zero_()
    return model


def _config(model) -> ABTrackConfig:
    return ABTrackConfig(name="roundtrip", model=dataclasses.replace(model.config))


def test_pruned_bdm_model_round_trip_is_exact(tmp_path):
    model = _pruned_bdm_model()
    template, search = images(model.config, batch=3)
    with torch.no_grad():
        before = model(template, search)
    path = tmp_path / "model.pt"
    save_checkpoint(path, model, _config(model), extra={"epoch": 7, "history": [0.5, 0.25], "note": "x"})
    loaded, cfg, extra = load_checkpoint(path)
    loaded.eval()
    assert extra == {"epoch": 7, "history": [0.5, 0.25], "note": "x"}
    assert cfg.name == "roundtrip" and cfg.model.bdm is True and cfg.model.vtp_masks is False
    assert loaded.bdm_enabled and loaded.pruning_plan == model.pruning_plan
    assert loaded.backbone.blocks[4].attn.qkv.out_features == 3 * 132
    with torch.no_grad():
        after = loaded(template, search)
    assert not bool(before.executed.all()), "the fixture must skip some blocks"
    for name in ("score_map", "offset_map", "size_map", "boxes", "scores", "bypass_probs", "executed"):
        assert torch.equal(getattr(after, name), getattr(before, name)), name


def test_checkpoint_is_plain_data(tmp_path):
    model = small_model()
    path = tmp_path / "model.pt"
    save_checkpoint(path, model, _config(model))
    payload = torch.load(path, weights_only=True)
    assert payload["version"] == checkpoint_module.FORMAT_VERSION and payload["pruning_plan"] is None
    assert payload["config"]["model"]["template_size"] == model.config.template_size


def test_unpruned_masks_survive_a_round_trip(tmp_path):
    model = small_model(vtp_masks=True)
    with torch.no_grad():
        model.backbone.blocks[1].mlp.hidden_mask[:5] = 0.25
    path = tmp_path / "stage1.pt"
    save_checkpoint(path, model, _config(model))
    loaded, cfg, _ = load_checkpoint(path)
    assert cfg.model.vtp_masks and loaded.pruning_plan is None
    assert torch.equal(loaded.backbone.blocks[1].mlp.hidden_mask, model.backbone.blocks[1].mlp.hidden_mask)


def test_fp16_storage_loads_back_as_fp32(tmp_path):
    model = small_model()
    full, half = tmp_path / "full.pt", tmp_path / "half.pt"
    save_checkpoint(full, model, _config(model))
    save_checkpoint(half, model, _config(model), half=True)
    assert half.stat().st_size < 0.6 * full.stat().st_size
    assert torch.load(half, weights_only=True)["state_dict"]["head.score.0.weight"].dtype == torch.float16
    loaded, _, _ = load_checkpoint(half)
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    weight = model.backbone.blocks[0].attn.qkv.weight
    assert torch.allclose(loaded.backbone.blocks[0].attn.qkv.weight, weight, atol=1e-3)


def test_runtime_switches_are_what_the_file_records(tmp_path):
    model = small_model()
    model.bdm_enabled = True
    model.bypass_threshold = 0.7
    path = tmp_path / "model.pt"
    save_checkpoint(path, model, _config(model))
    loaded, cfg, _ = load_checkpoint(path)
    assert cfg.model.bdm and loaded.bdm_enabled and loaded.bypass_threshold == pytest.approx(0.7)


def test_config_that_does_not_describe_the_model_is_refused(tmp_path):
    model = small_model()
    cfg = ABTrackConfig(model=small_config(n_enf=5))
    with pytest.raises(ValueError, match="n_enf"):
        save_checkpoint(tmp_path / "model.pt", model, cfg)


def test_extra_must_be_plain_data(tmp_path):
    model = small_model()
    with pytest.raises(ValueError, match="extra.bad"):
        save_checkpoint(tmp_path / "model.pt", model, _config(model), extra={"bad": NotPlainData()})


def test_missing_file_is_a_checkpoint_error(tmp_path):
    with pytest.raises(CheckpointError, match="nothing.pt: file not found"):
        load_checkpoint(tmp_path / "nothing.pt")


def test_pickled_object_is_refused(tmp_path):
    model = small_model()
    path = tmp_path / "evil.pt"
    payload = {"format": checkpoint_module.FORMAT_NAME, "version": checkpoint_module.FORMAT_VERSION,
               "state_dict": model.state_dict(), "config": {}, "pruning_plan": None,
               "extra": {"payload": NotPlainData()}}
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="evil.pt: refused: it holds objects that are not plain data .pickled test_model_checkpoint.NotPlainData"):
        load_checkpoint(path)


def test_truncated_and_garbage_files_are_refused(tmp_path):
    model = small_model()
    good = tmp_path / "good.pt"
    save_checkpoint(good, model, _config(model))
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated.pt: truncated or corrupt"):
        load_checkpoint(truncated)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x00" * 100)
    with pytest.raises(CheckpointError, match="garbage.pt: truncated or corrupt"):
        load_checkpoint(garbage)


def test_unknown_version_and_foreign_files_are_refused(tmp_path):
    future = tmp_path / "future.pt"
    torch.save({"format": checkpoint_module.FORMAT_NAME, "version": 99}, future)
    with pytest.raises(CheckpointError, match="future.pt: unknown format version 99"):
        load_checkpoint(future)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(2)}, foreign)
    with pytest.raises(CheckpointError, match="not an abtrack-checkpoint file"):
        load_checkpoint(foreign)


def test_weights_that_do_not_fit_the_config_are_refused(tmp_path):
    model = small_model()
    path = tmp_path / "model.pt"
    save_checkpoint(path, model, _config(model))
    payload = torch.load(path, weights_only=True)
    payload["config"]["model"]["head_channels"] = 64
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="weights do not fit the stored config"):
        load_checkpoint(path)
    payload["config"]["model"]["mystery"] = 1
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="invalid stored config.*mystery"):
        load_checkpoint(path)


def test_default_checkpoint_path(tmp_path, monkeypatch):
    target = tmp_path / "resources" / "default_model.pt"
    monkeypatch.setattr(checkpoint_module, "DEFAULT_CHECKPOINT", target)
    assert checkpoint_module.default_checkpoint_path() is None
    model = small_model()
    save_checkpoint(target, model, _config(model))
    assert checkpoint_module.default_checkpoint_path() == target


@pytest.mark.parametrize("entry, value, message", [
    ("state_dict", [1, 2], "'state_dict' is not a mapping of names to tensors"),
    ("state_dict", {"head.score.0.weight": 3}, "'state_dict' is not a mapping of names to tensors"),
    ("config", 3, "'config' is not a mapping .got int"),
    ("extra", [1], "'extra' is not a mapping .got list"),
])
def test_malformed_entries_are_checkpoint_errors(tmp_path, entry, value, message):
    model = small_model()
    path = tmp_path / "model.pt"
    save_checkpoint(path, model, _config(model))
    payload = torch.load(path, weights_only=True)
    payload[entry] = value
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(path)
