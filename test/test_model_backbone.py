"""Backbone construction, token layout, positional embeddings, pretrained loading, baseline equality."""
from __future__ import annotations

import dataclasses


import pytest
import timm
import torch
import torch.nn.functional as F

from abtrack_ros.config import ModelConfig
from abtrack_ros.model import build_model, interpolate_pos_embed
from abtrack_ros.model.blocks import PrunableBlock
from test_model_support import images, small_config, small_model


@pytest.mark.parametrize("backbone, dim, heads", [
    ("vit_tiny_patch16_224", 192, 3),
    ("deit_tiny_patch16_224", 192, 3),
    ("deit_small_patch16_224", 384, 6),
])
def test_full_size_forward_shapes(backbone, dim, heads):
    cfg = ModelConfig(backbone=backbone, bdm=True, head_channels=32)
    model = build_model(cfg).eval()
    assert model.backbone.pos_template.shape == (1, 64, dim)
    assert model.backbone.pos_search.shape == (1, 256, dim)
    assert model.backbone.blocks[0].attn.num_heads == heads
    template, search = images(cfg, batch=1)
    with torch.no_grad():
        out = model(template, search)
    assert out.score_map.shape == (1, 1, 16, 16) and out.offset_map.shape == (1, 2, 16, 16)
    assert out.size_map.shape == (1, 2, 16, 16) and out.boxes.shape == (1, 4) and out.scores.shape == (1,)
    assert out.bypass_probs.shape == (1, 12) and out.executed.shape == (1, 12)
    assert out.executed.dtype == torch.bool
    assert float(out.score_map.min()) >= 1e-4 and float(out.score_map.max()) <= 1 - 1e-4


def test_deit_base_construction_and_token_shapes():
    model = build_model(ModelConfig(backbone="deit_base_patch16_224", head_channels=32)).eval()
    assert model.num_blocks == 12 and model.backbone.blocks[0].attn.num_heads == 12
    with torch.no_grad():
        tokens = model.embed_template(torch.randn(1, 3, 128, 128))
        search = model.backbone.embed_search(torch.randn(1, 3, 256, 256))
    assert tokens.shape == (1, 64, 768) and search.shape == (1, 256, 768)


def _block_input_tokens(model, template, search) -> int:
    seen = []
    handle = model.backbone.blocks[0].register_forward_hook(lambda m, args, out: seen.append(args[0].shape[1]))
    with torch.no_grad():
        model(template, search)
    handle.remove()
    return seen[0]


def test_bypass_token_exists_only_with_bdm():
    model = small_model()
    template, search = images(model.config, batch=1)
    assert _block_input_tokens(model, template, search) == 4 + 16
    model.bdm_enabled = True
    assert _block_input_tokens(model, template, search) == 4 + 16 + 1


def test_template_cache_gives_the_same_output():
    model = small_model(bdm=True)
    template, search = images(model.config, batch=2)
    with torch.no_grad():
        direct = model(template, search)
        cached = model.forward_embedded(model.embed_template(template), search)
    assert torch.equal(direct.score_map, cached.score_map) and torch.equal(direct.boxes, cached.boxes)


def test_bad_input_shapes_are_value_errors():
    model = small_model()
    template, search = images(model.config, batch=1)
    with pytest.raises(ValueError, match="B x 3 x 64 x 64"):
        model(template, torch.randn(1, 3, 48, 48))
    with pytest.raises(ValueError, match="template batch"):
        model(template.expand(2, -1, -1, -1), search)
    with pytest.raises(ValueError, match="template tokens"):
        model.forward_embedded(torch.randn(1, 5, 192), search)


def _coordinate_grid(side: int) -> torch.Tensor:
    rows, cols = torch.meshgrid(torch.arange(side, dtype=torch.float32),
                                torch.arange(side, dtype=torch.float32), indexing="ij")
    return torch.stack([rows, cols, torch.full_like(rows, 3.5)], dim=-1).reshape(1, side * side, 3)


@pytest.mark.parametrize("out_side", [8, 16])
def test_pos_embed_interpolation_keeps_a_ramp(out_side):
    out = interpolate_pos_embed(_coordinate_grid(14), out_side).reshape(out_side, out_side, 3)
    assert torch.allclose(out[..., 2], torch.full((out_side, out_side), 3.5))  # constants stay
    ramp = out[:, 0, 0]
    assert torch.allclose(out[..., 0], ramp[:, None].expand(out_side, out_side))  # rows stay rows
    assert torch.allclose(out[..., 1], ramp[None, :].expand(out_side, out_side), atol=1e-5)
    assert bool((ramp[1:] > ramp[:-1]).all())
    assert torch.allclose(ramp + ramp.flip(0), torch.full_like(ramp, 13.0), atol=1e-4)  # symmetric
    ideal = (torch.arange(out_side) + 0.5) * 14 / out_side - 0.5  # half-pixel sample centres
    assert torch.allclose(ramp[1:-1], ideal[1:-1], atol=0.15)


def test_pos_embed_interpolation_identity_and_errors():
    grid = torch.randn(1, 196, 4)
    assert torch.allclose(interpolate_pos_embed(grid, 14), grid, atol=1e-6)
    with pytest.raises(ValueError, match="square"):
        interpolate_pos_embed(torch.randn(1, 195, 4), 8)


def _timm_reference_features(vit, cfg, template, search) -> torch.Tensor:
    """A plain one-stream tracker written directly on the timm modules."""
    grid = vit.pos_embed[:, 1:].reshape(1, 14, 14, -1).permute(0, 3, 1, 2)

    def embed(image, side):
        pos = F.interpolate(grid, size=(side, side), mode="bicubic", align_corners=False)
        return vit.patch_embed.proj(image).flatten(2).transpose(1, 2) + pos.flatten(2).transpose(1, 2)

    search_side = cfg.search_size // 16
    z, x = embed(template, cfg.template_size // 16), embed(search, search_side)
    h = torch.cat([z, x], dim=1)
    for block in vit.blocks:
        h = block(h)
    h = vit.norm(h)[:, z.shape[1]:]
    return h.transpose(1, 2).reshape(h.shape[0], -1, search_side, search_side)


def _pretrained_file(tmp_path, name="deit_tiny_patch16_224", nest=True, drop=(), add=()):
    torch.manual_seed(5)
    vit = timm.create_model(name, pretrained=False).eval()
    state = {k: v for k, v in vit.state_dict().items() if k not in drop}
    state.update({k: torch.zeros(3) for k in add})
    path = tmp_path / "weights.pth"
    torch.save({"model": state} if nest else state, path)
    return vit, path


def test_bdm_off_equals_plain_one_stream_tracker(tmp_path):
    vit, path = _pretrained_file(tmp_path)
    cfg = small_config(pretrained=str(path), bdm=False)
    model = build_model(cfg).eval()
    template, search = images(cfg, batch=2)
    with torch.no_grad():
        ours = model.backbone(model.embed_template(template), search)
        reference = _timm_reference_features(vit, cfg, template, search)
    assert torch.allclose(ours.search_map, reference, atol=1e-5)
    assert bool(ours.executed.all()) and float(ours.bypass_probs.abs().max()) == 0.0


def test_pretrained_loading_reports_missing_and_unexpected(tmp_path):
    vit, path = _pretrained_file(tmp_path, nest=False, drop=("norm.bias",), add=("dist_token",))
    model = build_model(small_config(pretrained=str(path)))
    report = model.pretrained_report
    assert report.missing == ["norm.bias"] and report.unexpected == ["dist_token"]
    assert torch.equal(model.backbone.blocks[3].mlp.fc2.weight, vit.blocks[3].mlp.fc2.weight)
    assert torch.equal(model.backbone.patch_embed.weight, vit.patch_embed.proj.weight)


def test_pretrained_errors_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        build_model(small_config(pretrained=str(tmp_path / "missing.pth")))
    _, path = _pretrained_file(tmp_path, name="deit_small_patch16_224")
    with pytest.raises(ValueError, match="shape"):
        build_model(small_config(pretrained=str(path)))
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="cannot read"):
        build_model(small_config(pretrained=str(junk)))


def test_prunable_block_copy_matches_timm_block():
    torch.manual_seed(0)
    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False).eval()
    block = PrunableBlock.from_timm(vit.blocks[2]).eval()
    x = torch.randn(2, 7, 192)
    with torch.no_grad():
        assert torch.allclose(block(x), vit.blocks[2](x), atol=1e-5)


def test_depth_keeps_the_first_blocks_of_the_pretrained_backbone(tmp_path):
    _, path = _pretrained_file(tmp_path)
    cfg = ModelConfig(pretrained=str(path), template_size=32, search_size=64, n_enf=1)
    full = build_model(cfg)
    short = build_model(dataclasses.replace(cfg, depth=4))
    assert short.num_blocks == 4 and full.num_blocks == 12
    for index in range(4):
        for (name, a), (_, b) in zip(full.backbone.blocks[index].state_dict().items(),
                                     short.backbone.blocks[index].state_dict().items()):
            assert torch.equal(a, b), (index, name)
    out = short(*images(cfg, 1))
    assert out.executed.shape == (1, 4)
    with pytest.raises(ValueError, match="depth 13"):
        build_model(ModelConfig(depth=13))
