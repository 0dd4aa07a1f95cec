"""Trainer pieces: optimizer groups, learning-rate steps, overrides, config checks, stage switches."""
import dataclasses
from pathlib import Path

import pytest
import torch

from abtrack_ros.config import ABTrackConfig, LrStep, ModelConfig, StageConfig, from_dict
from abtrack_ros.model import build_model
from abtrack_ros.training.distributed import DistributedContext
from abtrack_ros.training.reporting import CsvLog
from abtrack_ros.training.trainer import (
    TrainingError,
    TrainOptions,
    apply_overrides,
    epoch_seed,
    lr_factor,
    param_groups,
    prepare_for_stage,
    validate_train_config,
)


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    return build_model(ModelConfig(template_size=32, search_size=64, head_channels=16, vtp_masks=True))


def test_param_groups_split_backbone_head_gates_and_masks(tiny_model):
    model = prepare_for_stage(tiny_model, "vtp")
    stage = StageConfig(lr_backbone=1e-5, lr_head=1e-4, lr_gates=1e-2)
    groups = {g["name"]: g for g in param_groups(model, stage, weight_decay=1e-4)}
    assert set(groups) == {"backbone", "head", "masks"}  # the BDMs are frozen in stage vtp
    assert groups["backbone"]["lr"] == 1e-5 and groups["head"]["lr"] == 1e-4
    assert groups["masks"]["lr"] == 1e-2 and groups["masks"]["weight_decay"] == 0.0
    assert len(groups["masks"]["params"]) == 2 * model.num_blocks
    counted = sum(p.numel() for g in groups.values() for p in g["params"])
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert counted == trainable
    assert not model.backbone.bypass_token.requires_grad and not model.bdm_enabled


def test_bdm_stage_refuses_relaxed_masks_and_trains_the_gates():
    torch.manual_seed(0)
    model = build_model(ModelConfig(template_size=32, search_size=64, head_channels=16))
    with pytest.raises(TrainingError, match="prune"):
        prepare_for_stage(build_model(ModelConfig(template_size=32, search_size=64, head_channels=16,
                                                  vtp_masks=True)), "bdm")
    model = prepare_for_stage(model, "bdm")
    groups = {g["name"]: g for g in param_groups(model, StageConfig(lr_head=3e-4), 1e-4)}
    assert model.bdm_enabled and groups["gates"]["lr"] == 3e-4  # lr_gates None -> lr_head
    assert len(groups["gates"]["params"]) == 2 * (model.num_blocks - model.n_enf) + 1


def test_the_quality_head_and_the_search_reading_bdms_get_their_groups():
    torch.manual_seed(0)
    model = build_model(ModelConfig(template_size=32, search_size=64, head_channels=16, quality_head=True,
                                    bdm_input="token_search_mean"))
    model = prepare_for_stage(model, "bdm")
    groups = {g["name"]: g for g in param_groups(model, StageConfig(lr_head=3e-4, lr_gates=1e-2), 1e-4)}
    assert groups["quality"]["lr"] == 3e-4  # lr_quality None -> lr_head
    assert {id(p) for p in groups["quality"]["params"]} == {id(p) for p in model.quality.parameters()}
    # each BDM: linear weight and bias, and the search weights
    assert len(groups["gates"]["params"]) == 3 * (model.num_blocks - model.n_enf) + 1
    groups = {g["name"]: g for g in param_groups(model, StageConfig(lr_quality=2e-3), 1e-4)}
    assert groups["quality"]["lr"] == 2e-3 and groups["quality"]["base_lr"] == 2e-3


def test_lr_step_decay():
    stage = StageConfig(lr_drop_epoch=2, lr_drop_factor=0.1)
    assert [lr_factor(stage, e) for e in range(4)] == [1.0, 1.0, 0.1, 0.1]
    assert lr_factor(StageConfig(), 100) == 1.0


def test_lr_steps_schedule_a_warm_restart():
    stage = StageConfig(lr_steps=[LrStep(2, 0.1), LrStep(4, 0.5), LrStep(6, 0.05)])
    assert [lr_factor(stage, e) for e in range(8)] == [1.0, 1.0, 0.1, 0.1, 0.5, 0.5, 0.05, 0.05]
    for bad in ([LrStep(3, 0.1), LrStep(3, 0.5)], [LrStep(4, 0.1), LrStep(2, 0.5)], [LrStep(1, 0.0)]):
        cfg = ABTrackConfig()
        cfg.train.stage1_vtp = StageConfig(lr_steps=bad)
        with pytest.raises(TrainingError, match="lr_steps"):
            validate_train_config(cfg)
    cfg = ABTrackConfig()
    cfg.train.stage1_vtp = StageConfig(lr_drop_epoch=3, lr_steps=[LrStep(2, 0.1)])
    with pytest.raises(TrainingError, match="not both"):
        validate_train_config(cfg)
    parsed = from_dict(StageConfig, {"lr_steps": [{"epoch": 17, "factor": 0.1}]}, "stage1_vtp")
    assert parsed.lr_steps == [LrStep(17, 0.1)]


def test_epoch_seed_depends_on_every_part():
    base = epoch_seed(1, "vtp", 0, 0)
    assert base == epoch_seed(1, "vtp", 0, 0)
    assert len({base, epoch_seed(2, "vtp", 0, 0), epoch_seed(1, "bdm", 0, 0),
                epoch_seed(1, "vtp", 1, 0), epoch_seed(1, "vtp", 0, 1)}) == 5


def test_overrides_apply_to_both_stages_and_replace_datasets():
    opts = TrainOptions(out_dir=Path("x"), epochs=3, pairs_per_epoch=50, batch_size=2,
                        data=["got10k:/a", "lasot:/b"], prune_ratio=0.5, amp_cpu=True)
    cfg = apply_overrides(ABTrackConfig(), opts)
    assert cfg.train.amp_cpu is True
    assert cfg.train.stage1_vtp.epochs == cfg.train.stage3_bdm.epochs == 3
    assert cfg.train.stage3_bdm.pairs_per_epoch == 50 and cfg.train.batch_size == 2
    assert [d.spec for d in cfg.train.datasets] == ["got10k:/a", "lasot:/b"]
    assert cfg.model.prune_ratio == 0.5
    untouched = apply_overrides(ABTrackConfig(), TrainOptions(out_dir=Path("x")))
    assert untouched == ABTrackConfig()


@pytest.mark.parametrize("change,message", [
    ({"batch_size": 0}, "batch_size"),
    ({"amp_dtype": "float8"}, "amp_dtype"),
    ({"tau0": 1.5}, "tau0"),
    ({"stage3_bdm": StageConfig(lr_gates=-1.0)}, "stage3_bdm"),
    ({"stage1_vtp": StageConfig(epochs=0)}, "stage1_vtp.epochs"),
    ({"gate_noise": -0.5}, "gate_noise"),
    ({"model": ModelConfig(bdm_input="pooled")}, "model.bdm_input"),
    ({"quality_weight": -1.0}, "loss weights"),
    ({"stage3_bdm": StageConfig(lr_quality=0.0)}, "stage3_bdm learning rates"),
])
def test_config_values_are_checked(change, message):
    cfg = ABTrackConfig()
    model = change.pop("model", cfg.model)
    cfg = dataclasses.replace(cfg, model=model, train=dataclasses.replace(cfg.train, **change))
    with pytest.raises(TrainingError, match=message):
        validate_train_config(cfg)
    validate_train_config(ABTrackConfig())


def test_gate_noise_is_switched_on_for_the_bdm_stage_only(tmp_path):
    from abtrack_ros.training.trainer import StageTrainer

    torch.manual_seed(0)
    model = build_model(ModelConfig(template_size=32, search_size=64, head_channels=16))
    cfg = ABTrackConfig(model=model.config)
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, gate_noise=1.5))
    ctx = DistributedContext(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))
    StageTrainer("bdm", prepare_for_stage(model, "bdm"), cfg, ctx, tmp_path / "bdm", "test")
    assert model.backbone.gate_noise == 1.5
    model.add_vtp_masks()
    StageTrainer("vtp", prepare_for_stage(model, "vtp"), cfg, ctx, tmp_path / "vtp", "test")
    assert model.backbone.gate_noise == 0.0


def test_single_process_context_without_torchrun(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    ctx = DistributedContext.from_env("cpu")
    assert (ctx.rank, ctx.world_size, ctx.is_main, ctx.distributed) == (0, 1, True, False)
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(ValueError, match="WORLD_SIZE"):
        DistributedContext.from_env("cpu")


def test_csv_log_appends_and_rejects_unknown_columns(tmp_path):
    log = CsvLog(tmp_path / "log.csv", ["a", "b"])
    log.write({"a": 1, "b": 0.5})
    CsvLog(tmp_path / "log.csv", ["a", "b"]).write({"a": 2})
    assert (tmp_path / "log.csv").read_text().splitlines() == ["a,b", "1,0.5", "2,"]
    with pytest.raises(ValueError, match="unknown columns"):
        log.write({"c": 1})


def test_csv_log_from_another_version_is_rewritten_under_both_headers(tmp_path):
    (tmp_path / "log.csv").write_text("a,old\n1,x\n")
    log = CsvLog(tmp_path / "log.csv", ["a", "new"])
    log.write({"a": 2, "new": 0.5})
    assert (tmp_path / "log.csv").read_text().splitlines() == ["a,new,old", "1,,x", "2,0.5,"]
