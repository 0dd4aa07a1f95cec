"""ViT pruning: local per-head ranking, head-divisible kept dims, sliced == masked."""
from __future__ import annotations

import pytest
import torch

from abtrack_ros.model import prune_model
from abtrack_ros.model.blocks import PrunableAttention, kept_count
from test_model_support import images, small_model


def _randomise_masks(model, seed: int = 4) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for block in model.backbone.blocks:
            for mask in (block.attn.inner_mask, block.mlp.hidden_mask):
                mask.copy_(torch.rand(mask.shape, generator=gen) * 1.5 + 0.1)


@pytest.mark.parametrize("size, ratio, expected", [(64, 0.7, 44), (768, 0.7, 537), (10, 0.7, 7), (64, 0.5, 32)])
def test_kept_count_is_a_floor(size, ratio, expected):
    assert kept_count(size, ratio) == expected


@pytest.mark.parametrize("ratio", [0.3, 0.5, 0.1])
def test_kept_attention_dims_are_head_divisible(ratio):
    model = small_model(vtp_masks=True)
    _randomise_masks(model)
    plan = prune_model(model, ratio)
    heads, dim, hidden = 3, 192, 768
    expected_attn = int(dim * (1 - ratio) / heads) * heads  # d* = floor(d * sigma / N_h) * N_h
    for block, attn_keep, mlp_keep in zip(model.backbone.blocks, plan.attn_keep, plan.mlp_keep):
        assert len(attn_keep) == expected_attn and len(attn_keep) % heads == 0
        per_head = [sum(1 for i in attn_keep if i // 64 == h) for h in range(heads)]
        assert per_head == [expected_attn // heads] * heads
        assert block.attn.qkv.out_features == 3 * expected_attn
        assert block.attn.proj.in_features == expected_attn
        assert block.mlp.fc1.out_features == len(mlp_keep) == int(hidden * (1 - ratio))
        assert block.mlp.fc2.in_features == len(mlp_keep)
        assert block.attn.scale == pytest.approx(64 ** -0.5)  # the original head_dim's scale


def test_ranking_is_local_to_each_head_and_block():
    attn = PrunableAttention(dim=8, num_heads=2)
    attn.add_mask()
    with torch.no_grad():  # head 1 scores dominate globally; each head still keeps its own top 2
        attn.inner_mask.copy_(torch.tensor([0.1, -0.4, 0.3, 0.2, 9.0, 8.0, 7.0, 6.0]))
    assert attn.keep_indices(0.5).tolist() == [1, 2, 4, 5]

    model = small_model(vtp_masks=True)
    _randomise_masks(model)
    with torch.no_grad():  # a block with tiny scores is not pruned harder than the others
        model.backbone.blocks[0].attn.inner_mask.mul_(1e-3)
        model.backbone.blocks[0].mlp.hidden_mask.mul_(1e-3)
    plan = prune_model(model, 0.3)
    assert len({len(keep) for keep in plan.attn_keep}) == 1
    assert len({len(keep) for keep in plan.mlp_keep}) == 1


@pytest.mark.parametrize("bdm", [False, True])
def test_sliced_model_equals_masked_model(bdm):
    model = small_model(vtp_masks=True, bdm=bdm)
    _randomise_masks(model)
    template, search = images(model.config, batch=2)
    keep_attn = [b.attn.keep_indices(0.7) for b in model.backbone.blocks]
    keep_mlp = [b.mlp.keep_indices(0.7) for b in model.backbone.blocks]
    with torch.no_grad():  # the masked model: relaxed values on kept dims, zeros elsewhere
        for block, attn_keep, mlp_keep in zip(model.backbone.blocks, keep_attn, keep_mlp):
            for mask, keep in ((block.attn.inner_mask, attn_keep), (block.mlp.hidden_mask, mlp_keep)):
                dropped = torch.ones_like(mask, dtype=torch.bool)
                dropped[keep] = False
                mask[dropped] = 0.0
        masked = model(template, search)
    prune_model(model, 0.3)
    assert not model.has_vtp_masks
    with torch.no_grad():
        sliced = model(template, search)
    assert torch.allclose(sliced.score_map, masked.score_map, atol=1e-5)
    assert torch.allclose(sliced.size_map, masked.size_map, atol=1e-5)
    assert torch.allclose(sliced.offset_map, masked.offset_map, atol=1e-4)
    assert torch.equal(sliced.executed, masked.executed)


def test_l1_masks_sums_absolute_mask_values():
    model = small_model(vtp_masks=True)
    assert model.l1_masks().item() == pytest.approx(12 * (192 + 768))
    with torch.no_grad():
        model.backbone.blocks[2].mlp.hidden_mask[:10] = -2.0
    assert model.l1_masks().item() == pytest.approx(12 * (192 + 768) + 10)
    assert small_model().l1_masks().item() == 0.0


def test_masks_at_one_do_not_change_the_model():
    plain = small_model(seed=2)
    masked = small_model(seed=2, vtp_masks=True)
    template, search = images(plain.config, batch=1)
    with torch.no_grad():
        assert torch.allclose(plain(template, search).score_map, masked(template, search).score_map, atol=1e-6)


def test_pruning_errors():
    with pytest.raises(ValueError, match="no VTP mask"):
        prune_model(small_model(), 0.3)
    model = small_model(vtp_masks=True)
    with pytest.raises(ValueError, match="pruning ratio"):
        prune_model(model, 1.0)
    prune_model(model, 0.3)
    with pytest.raises(ValueError, match="already pruned"):
        prune_model(model, 0.3)
    with pytest.raises(ValueError, match="already pruned"):
        model.add_vtp_masks()
