"""Bypass decision modules: real skipping, per-sample batches, the straight-through gate."""
from __future__ import annotations

import pytest
import torch

from test_model_support import images, set_bypass_logits, small_model

SATURATED = 30.0  # sigmoid(+-30) is 1 or 0 to float precision


class BlockCalls:
    """Counts real calls of every block module and the batch size each call saw."""

    def __init__(self, model):
        self.calls: list[tuple[int, int]] = []
        self.handles = [block.register_forward_hook(self._hook(i))
                        for i, block in enumerate(model.backbone.blocks)]

    def _hook(self, index):
        def record(module, args, output):
            self.calls.append((index, args[0].shape[0]))
        return record

    def blocks(self) -> list[int]:
        return [index for index, _ in self.calls]

    def remove(self):
        for handle in self.handles:
            handle.remove()


@pytest.mark.parametrize("bdm", [False, True])
@pytest.mark.parametrize("skipped", [[], [4], [0, 5, 11], [3, 4, 5, 6, 7, 8, 9, 10, 11]])
def test_forced_pattern_runs_exactly_the_other_blocks(bdm, skipped):
    model = small_model(bdm=bdm)
    template, search = images(model.config, batch=1)
    model.set_forced_pattern([i not in skipped for i in range(12)])
    counter = BlockCalls(model)
    with torch.no_grad():
        out = model(template, search)
    counter.remove()
    assert counter.blocks() == [i for i in range(12) if i not in skipped]
    assert out.executed[0].tolist() == [i not in skipped for i in range(12)]
    model.set_forced_pattern(None)
    counter = BlockCalls(model)
    with torch.no_grad():
        model(template, search)
    assert len(counter.calls) == 12


def test_skipped_block_leaves_every_token_unchanged():
    model = small_model(bdm=True)
    template, search = images(model.config, batch=2)
    model.set_forced_pattern([i != 6 for i in range(12)])
    seen = {}
    model.backbone.blocks[5].register_forward_hook(lambda m, args, out: seen.setdefault("after5", out))
    model.backbone.blocks[7].register_forward_pre_hook(lambda m, args: seen.update(into7=args[0]))
    with torch.no_grad():
        model(template, search)
    assert seen["into7"].shape[1] == 4 + 16 + 1  # template, search and bypass token
    assert torch.equal(seen["into7"], seen["after5"])


def test_bypass_probability_is_sigmoid_linear_of_the_entering_bypass_token():
    model = small_model(bdm=True)
    torch.manual_seed(3)
    for decision in model.backbone.decisions:
        torch.nn.init.normal_(decision.linear.weight, std=0.5)
    entering = {}
    for i in (3, 8):
        model.backbone.blocks[i].register_forward_pre_hook(
            lambda m, args, i=i: entering.update({i: args[0][:, -1].clone()}))
    model.bypass_threshold = 1.0  # run everything so both hooks fire
    template, search = images(model.config, batch=2)
    with torch.no_grad():
        out = model(template, search)
        for i in (3, 8):
            linear = model.backbone.decisions[i - model.n_enf].linear
            assert torch.allclose(out.bypass_probs[:, i], torch.sigmoid(linear(entering[i])).squeeze(-1))
    assert float(out.bypass_probs[:, :3].abs().max()) == 0.0


def test_gates_skip_blocks_above_the_threshold():
    model = small_model(bdm=True)
    run = [True] * 3 + [True, False, True, False, False, True, True, False, True]
    set_bypass_logits(model, [-SATURATED if r else SATURATED for r in run[3:]])
    template, search = images(model.config, batch=3)
    counter = BlockCalls(model)
    with torch.no_grad():
        out = model(template, search)
    assert counter.blocks() == [i for i, r in enumerate(run) if r]
    assert out.executed.tolist() == [run] * 3
    model.bypass_threshold = 1.0  # p = 1 - eps is never above 1: everything runs
    with torch.no_grad():
        assert bool(model(template, search).executed.all())


def _model_with_mixed_decisions():
    """BDMs that depend strongly on the input so that samples of one batch disagree."""
    model = small_model(bdm=True)
    gen = torch.Generator().manual_seed(11)
    with torch.no_grad():
        for decision in model.backbone.decisions:
            decision.linear.weight.copy_(torch.randn(decision.linear.weight.shape, generator=gen) * 3)
            decision.linear.bias.zero_()
    return model


def test_per_sample_skipping_equals_one_by_one():
    model = _model_with_mixed_decisions()
    template, search = images(model.config, batch=4, seed=7)
    counter = BlockCalls(model)
    with torch.no_grad():
        batched = model(template, search)
    counter.remove()
    mixed = [i for i in range(12) if 0 < int(batched.executed[:, i].sum()) < 4]
    assert mixed, "the fixture must produce per-sample disagreement"
    sizes = dict(counter.calls)
    for i in mixed:  # the block really ran on the running samples only
        assert sizes[i] == int(batched.executed[:, i].sum())
    for b in range(4):
        with torch.no_grad():
            single = model(template[b:b + 1], search[b:b + 1])
        assert torch.equal(single.executed[0], batched.executed[b])
        assert torch.allclose(single.score_map[0], batched.score_map[b], atol=1e-5)
        assert torch.allclose(single.boxes[0], batched.boxes[b], atol=1e-5)
        assert torch.allclose(single.bypass_probs[0], batched.bypass_probs[b], atol=1e-5)


def test_training_gate_agrees_with_inference_when_saturated():
    model = small_model(bdm=True)
    logits = [SATURATED, -SATURATED, SATURATED, SATURATED, -SATURATED, -SATURATED, SATURATED, -SATURATED, SATURATED]
    set_bypass_logits(model, logits)
    template, search = images(model.config, batch=2)
    tokens = model.embed_template(template)
    with torch.no_grad():
        inference = model.backbone(tokens, search)
    model.train()
    training = model.backbone(tokens, search)
    assert torch.equal(training.executed, inference.executed)
    assert inference.executed[0].tolist() == [True] * 3 + [l < 0 for l in logits]
    assert torch.allclose(training.search_map, inference.search_map, atol=1e-5)


def test_training_step_reaches_bdm_and_vtp_masks():
    model = small_model(bdm=True, vtp_masks=True)
    model.train()
    template, search = images(model.config, batch=2)
    out = model(template, search)
    tracking_loss = out.boxes.sum() + out.score_map.mean()
    tracking_loss.backward(retain_graph=True)
    for decision in model.backbone.decisions:  # straight-through: the tracking loss alone reaches every BDM
        assert float(decision.linear.weight.grad.abs().sum()) > 0
    sparsity = (out.bypass_probs[:, model.n_enf:].mean() - 0.4).abs()
    model.zero_grad()
    sparsity.backward(retain_graph=True)
    for decision in model.backbone.decisions:  # and so does the sparsity loss alone
        assert float(decision.linear.bias.grad.abs()) > 0
    loss = tracking_loss + 5.0 * sparsity + 1e-4 * model.l1_masks()
    model.zero_grad()
    loss.backward()
    for block in model.backbone.blocks:
        assert float(block.attn.inner_mask.grad.abs().sum()) > 0
        assert float(block.mlp.hidden_mask.grad.abs().sum()) > 0
    before = model.backbone.decisions[0].linear.bias.detach().clone()
    torch.optim.AdamW(model.parameters(), lr=1e-3).step()
    assert not torch.equal(before, model.backbone.decisions[0].linear.bias)


def test_forced_pattern_is_validated():
    model = small_model()
    with pytest.raises(ValueError, match="12 booleans"):
        model.set_forced_pattern([True] * 11)
    with pytest.raises(ValueError, match="12 booleans"):
        model.set_forced_pattern([1] * 12)


def test_bdm_reading_the_search_tokens_adds_their_mean_to_the_logit():
    model = small_model(bdm=True, bdm_input="token_search_mean")
    torch.manual_seed(3)
    for decision in model.backbone.decisions:
        torch.nn.init.normal_(decision.linear.weight, std=0.5)
        torch.nn.init.normal_(decision.search_linear.weight, std=0.5)
    entering = {}
    for i in (3, 8):
        model.backbone.blocks[i].register_forward_pre_hook(
            lambda m, args, i=i: entering.update({i: args[0].clone()}))
    model.bypass_threshold = 1.0
    template, search = images(model.config, batch=2)
    with torch.no_grad():
        out = model(template, search)
        for i in (3, 8):
            decision = model.backbone.decisions[i - model.n_enf]
            tokens = entering[i]
            search_mean = tokens[:, 4:4 + 16].mean(dim=1)  # 2x2 template tokens, then 4x4 search tokens
            logit = decision.linear(tokens[:, -1]) + decision.search_linear(search_mean)
            assert torch.allclose(out.bypass_probs[:, i], torch.sigmoid(logit).squeeze(-1))
            # the search term really moves p: a different search mean gives a different probability
            assert not torch.allclose(decision.search_linear(search_mean), torch.zeros(2, 1))


def test_search_input_added_to_a_trained_model_changes_nothing_until_trained():
    model = _model_with_mixed_decisions()
    template, search = images(model.config, batch=4, seed=7)
    with torch.no_grad():
        before = model(template, search)
    model.set_bdm_input("token_search_mean")
    assert model.config.bdm_input == "token_search_mean"
    assert all(d.search_linear is not None for d in model.backbone.decisions)
    with torch.no_grad():
        after = model(template, search)
    assert torch.equal(after.bypass_probs, before.bypass_probs)
    assert torch.equal(after.boxes, before.boxes)
    with pytest.raises(ValueError, match="cannot be removed"):
        model.set_bdm_input("token")
    with pytest.raises(ValueError, match="unknown bdm_input"):
        model.set_bdm_input("search")
    with pytest.raises(ValueError, match="unknown bdm_input"):
        small_model(bdm_input="pooled")


def test_search_input_is_saved_and_rebuilt_from_the_checkpoint(tmp_path):
    from abtrack_ros.config import ABTrackConfig
    from abtrack_ros.model import load_checkpoint, save_checkpoint

    model = small_model(bdm=True)
    model.set_bdm_input("token_search_mean")
    with torch.no_grad():
        for decision in model.backbone.decisions:
            decision.search_linear.weight.normal_()
    save_checkpoint(tmp_path / "m.pt", model, ABTrackConfig(model=small_model().config))
    loaded, cfg, _ = load_checkpoint(tmp_path / "m.pt")
    loaded.eval()
    assert cfg.model.bdm_input == "token_search_mean" and loaded.bdm_input == "token_search_mean"
    template, search = images(model.config, batch=2)
    with torch.no_grad():
        assert torch.equal(loaded(template, search).bypass_probs, model(template, search).bypass_probs)


def test_gate_noise_explores_other_paths_in_training_only():
    model = small_model(bdm=True)
    set_bypass_logits(model, [1.0, -1.0, 0.5, -0.5, 2.0, -2.0, 0.0, 1.5, -1.5])  # near the threshold
    template, search = images(model.config, batch=4)
    tokens = model.embed_template(template)
    model.train()
    plain = [model.backbone(tokens, search).executed for _ in range(2)]
    assert torch.equal(plain[0], plain[1])  # the paper's gate: deterministic
    model.backbone.gate_noise = 2.0
    torch.manual_seed(0)
    noisy = [model.backbone(tokens, search) for _ in range(4)]
    assert any(not torch.equal(out.executed, plain[0]) for out in noisy)
    assert len({tuple(out.executed.flatten().tolist()) for out in noisy}) > 1
    for out in noisy:  # the reported probabilities (the sparsity loss's input) are not noisy
        assert torch.allclose(out.bypass_probs, noisy[0].bypass_probs)
    out = model.backbone(tokens, search)
    out.search_map.sum().backward()  # the straight-through gradient still reaches the BDMs
    assert float(model.backbone.decisions[0].linear.bias.grad.abs()) > 0
    model.eval()
    with torch.no_grad():
        evaluated = [model.backbone(tokens, search).executed for _ in range(3)]
    assert all(torch.equal(e, evaluated[0]) for e in evaluated)  # inference ignores the noise
