"""The convolutional stem (model.patch_embed: conv_stem): shapes, config, checkpoints, VTP, BDM, ONNX."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from abtrack_ros.config import ABTrackConfig, load_config, to_dict
from abtrack_ros.model import build_model, load_checkpoint, prune_model, save_checkpoint
from abtrack_ros.model.patch_embed import ConvStem, conv_stem_widths
from test_model_support import CONFIG_DIR, images, small_config, small_model

DIM = 192  # DeiT-Tiny


def _randomise_stem_statistics(model, seed: int = 3) -> None:
    """BatchNorm statistics and affine values away from their identity initialisation, as after
    training, so that round trips and exports really carry them."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.backbone.patch_embed.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.copy_(torch.randn(module.num_features, generator=gen) * 0.3)
                module.running_var.copy_(torch.rand(module.num_features, generator=gen) + 0.5)
                module.weight.copy_(torch.rand(module.num_features, generator=gen) + 0.5)
                module.bias.copy_(torch.randn(module.num_features, generator=gen) * 0.1)


def _pruned_bdm_stem_model(seed: int = 0, **overrides):
    """A conv-stem model with random VTP masks, pruned, and BDMs that disagree between inputs."""
    model = small_model(seed, patch_embed="conv_stem", vtp_masks=True, **overrides)
    _randomise_stem_statistics(model)
    gen = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for block in model.backbone.blocks:
            for mask in (block.attn.inner_mask, block.mlp.hidden_mask):
                mask.copy_(torch.rand(mask.shape, generator=gen) + 0.2)
    prune_model(model, 0.3)
    model.bdm_enabled = True
    with torch.no_grad():
        for decision in model.backbone.decisions:
            decision.linear.weight.copy_(torch.randn(decision.linear.weight.shape, generator=gen) * 3)
            decision.linear.bias.zero_()
    return model


@pytest.mark.parametrize("patch, widths", [(16, [24, 48, 96, 192]), (8, [48, 96, 192]), (2, [192])])
def test_stem_widths_double_up_to_the_embed_dim(patch, widths):
    assert conv_stem_widths(DIM, patch) == widths


@pytest.mark.parametrize("size", [32, 64, 128, 256])  # template and search crops, small and full
def test_stem_output_has_the_patch_grid(size):
    stem = ConvStem(DIM, 16).eval()
    with torch.no_grad():
        out = stem(torch.randn(2, 3, size, size))
    assert out.shape == (2, DIM, size // 16, size // 16)


def test_stem_tokens_see_only_their_neighbourhood():
    """Four k3/s2/p1 stages: token j sees input pixels 16j-15..16j+15, so changing the 16x16
    cell (4, 4) changes tokens (4..5, 4..5) and no other."""
    stem = ConvStem(DIM, 16).eval()
    image = torch.randn(1, 3, 128, 128)
    changed = image.clone()
    changed[:, :, 64:80, 64:80] += 1.0
    with torch.no_grad():
        diff = (stem(changed) - stem(image)).abs().amax(1)[0]
    reached = torch.zeros(8, 8, dtype=torch.bool)
    reached[4:6, 4:6] = True
    assert float(diff[reached].min()) > 1e-3
    assert float(diff[~reached].max()) < 1e-5  # zero up to the convolution algorithm's rounding


@pytest.mark.parametrize("patch, message", [(12, "power-of-two patch size"), (1, "power-of-two patch size")])
def test_stem_needs_a_power_of_two_patch(patch, message):
    with pytest.raises(ValueError, match=message):
        ConvStem(DIM, patch)


def test_stem_needs_a_divisible_embed_dim():
    with pytest.raises(ValueError, match="divisible"):
        ConvStem(100, 16)


def test_model_tokens_and_template_cache_with_the_stem():
    model = small_model(patch_embed="conv_stem")
    template, search = images(model.config, batch=2)
    with torch.no_grad():
        tokens = model.embed_template(template)
        assert tokens.shape == (2, (model.config.template_size // 16) ** 2, DIM)
        assert model.backbone.embed_search(search).shape == (2, (model.config.search_size // 16) ** 2, DIM)
        assert torch.equal(model.forward_embedded(tokens, search).score_map, model(template, search).score_map)


def test_linear_stays_the_default_with_the_old_keys():
    assert small_config().patch_embed == "linear"
    model = small_model()
    assert isinstance(model.backbone.patch_embed, torch.nn.Conv2d)
    assert {k for k in model.state_dict() if k.startswith("backbone.patch_embed.")} == {
        "backbone.patch_embed.weight", "backbone.patch_embed.bias"}


@pytest.mark.parametrize("overrides, message", [
    ({"patch_embed": "conv"}, "unknown patch_embed 'conv'"),
    ({"patch_embed": "conv_stem", "pretrained": "weights/deit.pth"}, "trained from scratch"),
])
def test_bad_patch_embed_settings_are_value_errors(overrides, message):
    with pytest.raises(ValueError, match=message):
        build_model(small_config(**overrides))


def test_convstem_recipe_is_the_default_recipe_with_the_stem():
    default = to_dict(load_config(CONFIG_DIR / "abtrack_default_cpu.yaml"))
    stem = to_dict(load_config(CONFIG_DIR / "abtrack_default_cpu_convstem.yaml"))
    assert stem["model"].pop("patch_embed") == "conv_stem" and default["model"].pop("patch_embed") == "linear"
    assert stem["model"] == default["model"] and stem["train"] == default["train"]
    assert stem["tracker"] == default["tracker"]


def test_round_trip_of_a_pruned_bdm_stem_model_is_exact(tmp_path):
    model = _pruned_bdm_stem_model()
    template, search = images(model.config, batch=3)
    with torch.no_grad():
        before = model(template, search)
    path = tmp_path / "stem.pt"
    save_checkpoint(path, model, ABTrackConfig(model=dataclasses.replace(model.config)))
    assert torch.load(path, weights_only=True)["config"]["model"]["patch_embed"] == "conv_stem"
    loaded, cfg, _ = load_checkpoint(path)
    assert cfg.model.patch_embed == "conv_stem" and loaded.pruning_plan == model.pruning_plan
    with torch.no_grad():
        after = loaded.eval()(template, search)
    assert not bool(before.executed.all()), "the fixture must skip some blocks"
    for name in ("score_map", "offset_map", "size_map", "boxes", "scores", "bypass_probs", "executed"):
        assert torch.equal(getattr(after, name), getattr(before, name)), name


def test_checkpoint_without_the_key_loads_as_linear(tmp_path):
    """A checkpoint written before patch_embed existed has no such key: it is a linear model."""
    model = small_model()
    path = tmp_path / "old.pt"
    save_checkpoint(path, model, ABTrackConfig(model=dataclasses.replace(model.config)))
    payload = torch.load(path, weights_only=True)
    del payload["config"]["model"]["patch_embed"]
    torch.save(payload, path)
    loaded, cfg, _ = load_checkpoint(path)
    assert cfg.model.patch_embed == "linear"
    assert torch.equal(loaded.backbone.patch_embed.weight, model.backbone.patch_embed.weight)


def test_config_must_name_the_models_patch_embed(tmp_path):
    model = small_model(patch_embed="conv_stem")
    with pytest.raises(ValueError, match="patch_embed"):
        save_checkpoint(tmp_path / "m.pt", model, ABTrackConfig(model=small_config()))


def test_sliced_stem_model_equals_masked_model():
    model = small_model(patch_embed="conv_stem", vtp_masks=True, bdm=True)
    _randomise_stem_statistics(model)
    gen = torch.Generator().manual_seed(9)
    blocks = model.backbone.blocks
    with torch.no_grad():
        for block in blocks:
            for mask in (block.attn.inner_mask, block.mlp.hidden_mask):
                mask.copy_(torch.rand(mask.shape, generator=gen) * 1.5 + 0.1)
        keeps = [(b.attn.keep_indices(0.7), b.mlp.keep_indices(0.7)) for b in blocks]
        for block, (attn_keep, mlp_keep) in zip(blocks, keeps):  # the masked model: dropped dims zero
            for mask, keep in ((block.attn.inner_mask, attn_keep), (block.mlp.hidden_mask, mlp_keep)):
                dropped = torch.ones_like(mask, dtype=torch.bool)
                dropped[keep] = False
                mask[dropped] = 0.0
        template, search = images(model.config, batch=2)
        masked = model(template, search)
    prune_model(model, 0.3)
    assert blocks[0].mlp.fc1.out_features == 537
    with torch.no_grad():
        sliced = model(template, search)
    assert torch.allclose(sliced.score_map, masked.score_map, atol=1e-5)
    assert torch.allclose(sliced.offset_map, masked.offset_map, atol=1e-4)
    assert torch.equal(sliced.executed, masked.executed)


def test_bdm_with_the_stem_batches_like_one_by_one():
    model = _pruned_bdm_stem_model()
    template, search = images(model.config, batch=4, seed=7)
    with torch.no_grad():
        batched = model(template, search)
        assert 0 < int(batched.executed.sum()) < batched.executed.numel()
        for b in range(4):
            single = model(template[b:b + 1], search[b:b + 1])
            assert torch.equal(single.executed[0], batched.executed[b])
            assert torch.allclose(single.boxes[0], batched.boxes[b], atol=1e-5)


def test_training_step_reaches_the_stem():
    model = small_model(patch_embed="conv_stem", bdm=True).train()
    template, search = images(model.config, batch=2)
    out = model(template, search)
    (out.boxes.sum() + out.score_map.mean() + out.bypass_probs.sum()).backward()
    stem = model.backbone.patch_embed
    assert float(stem.stages[0].conv.weight.grad.abs().sum()) > 0
    assert float(stem.proj.weight.grad.abs().sum()) > 0
    assert int(stem.stages[0].norm.num_batches_tracked) == 2  # template and search batches


def test_onnxruntime_backend_runs_the_stem(tmp_path):
    pytest.importorskip("onnxruntime")
    from abtrack_ros.backends import OnnxRuntimeBackend, TorchBackend

    model = _pruned_bdm_stem_model(depth=4, n_enf=1)
    reference = TorchBackend(model, torch.device("cpu"))
    backend = OnnxRuntimeBackend(model, threads=1, cache_dir=tmp_path)
    executed = []
    for seed in range(4):
        template, search = images(model.config, batch=1, seed=seed)
        with torch.inference_mode():
            ref_tokens, tokens = reference.embed_template(template), backend.embed_template(template)
            ref, out = reference.forward_embedded(ref_tokens, search), backend.forward_embedded(tokens, search)
        assert torch.allclose(tokens, ref_tokens, atol=1e-4)
        assert torch.equal(out.executed, ref.executed)
        for name in ("bypass_probs", "boxes", "scores", "score_map", "offset_map", "size_map"):
            assert torch.allclose(getattr(out, name), getattr(ref, name), atol=1e-4), name
        executed.append(ref.executed)
    executed = torch.cat(executed)
    gated = executed[:, model.n_enf:]
    assert bool(gated.any()) and not bool(gated.all())  # gated blocks that ran and that were skipped
