"""Helpers shared by the model tests, and the tests of the model configs."""
from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest
import torch

from abtrack_ros.config import ConfigError, ModelConfig, load_config
from abtrack_ros.model import ABTrackModel, build_model

CONFIG_DIR = Path(__file__).resolve().parent.parent / "config" / "models"
PAPER_CONFIGS = ("abtrack_vit_tiny.yaml", "abtrack_deit_tiny.yaml", "abtrack_avit_tiny.yaml",
                 "abtrack_deit_small.yaml", "abtrack_deit_base.yaml")
# Small crops keep the CPU tests fast: 2x2 template tokens, 4x4 search tokens.
SMALL_TEMPLATE = 32
SMALL_SEARCH = 64


def small_config(**overrides) -> ModelConfig:
    base = ModelConfig(backbone="deit_tiny_patch16_224", template_size=SMALL_TEMPLATE,
                       search_size=SMALL_SEARCH, head_channels=32)
    return dataclasses.replace(base, **overrides)


def small_model(seed: int = 0, **overrides) -> ABTrackModel:
    torch.manual_seed(seed)
    return build_model(small_config(**overrides)).eval()


def images(cfg: ModelConfig, batch: int, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(batch, 3, cfg.template_size, cfg.template_size, generator=gen),
            torch.randn(batch, 3, cfg.search_size, cfg.search_size, generator=gen))


def set_bypass_logits(model: ABTrackModel, logits: list[float]) -> None:
    """Saturate the BDMs: zero weights and a bias per BDM, so p_i = sigmoid(logit_i)."""
    with torch.no_grad():
        for decision, logit in zip(model.backbone.decisions, logits):
            decision.linear.weight.zero_()
            decision.linear.bias.fill_(logit)


@pytest.mark.parametrize("name", PAPER_CONFIGS + ("abtrack_tiny_cpu.yaml",))
def test_every_model_config_loads(name):
    cfg = load_config(CONFIG_DIR / name)
    assert cfg.model.n_enf == 3 and cfg.model.bypass_threshold == 0.5
    assert cfg.model.prune_ratio == pytest.approx(0.3)


@pytest.mark.parametrize("name", PAPER_CONFIGS)
def test_paper_configs_carry_the_paper_numbers(name):
    train = load_config(CONFIG_DIR / name).train
    assert train.batch_size == 32 and train.tau0 == 0.4 and train.sparsity_slope == 0.1
    assert train.sparsity_weight == 5.0 and train.vtp_l1_weight == 1e-4 and train.weight_decay == 1e-4
    stage = train.stage3_bdm
    assert (stage.epochs, stage.pairs_per_epoch, stage.lr_drop_epoch, stage.lr_backbone) == (300, 60000, 240, 4e-5)


def test_unknown_model_key_is_named(tmp_path):
    text = (CONFIG_DIR / "abtrack_deit_tiny.yaml").read_text().replace("n_enf: 3", "n_enf: 3\n  n_enforced: 2")
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match="model.n_enforced"):
        load_config(path)


def test_wrong_type_in_model_config_is_an_error(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("model:\n  bdm: 'yes'\n")
    with pytest.raises(ConfigError, match="model.bdm"):
        load_config(path)


@pytest.mark.parametrize("overrides, message", [
    ({"backbone": "resnet50"}, "unknown backbone"),
    ({"gate": "gumbel"}, "unknown gate"),
    ({"n_enf": 13}, "n_enf"),
    ({"search_size": 70}, "search_size"),
    ({"patch_size": 8}, "patch_size"),
    ({"prune_ratio": 1.0}, "prune_ratio"),
    ({"bypass_threshold": 1.5}, "bypass_threshold"),
    ({"drop_path_rate": -0.1}, "drop_path_rate"),
])
def test_bad_model_settings_are_value_errors(overrides, message):
    with pytest.raises(ValueError, match=message):
        build_model(small_config(**overrides))


def test_model_modules_import_without_cycles():
    """Lower modules never import upper ones: the graph of relative imports inside the package
    (TYPE_CHECKING imports included) is acyclic."""
    package = Path(__file__).resolve().parent.parent / "abtrack_ros" / "model"
    imports = {path.stem: {node.module for node in ast.walk(ast.parse(path.read_text()))
                           if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module}
               for path in package.glob("*.py") if path.stem != "__init__"}
    done: set[str] = set()

    def visit(name: str, chain: tuple[str, ...]) -> None:
        assert name not in chain, f"import cycle: {' -> '.join(chain + (name,))}"
        if name not in done:
            for child in imports.get(name, ()):
                visit(child, chain + (name,))
            done.add(name)

    for name in imports:
        visit(name, ())
