"""The three-stage pipeline end to end on a small synthetic dataset: stages, resume, DDP, errors."""
import csv
import os
import subprocess
import sys
from pathlib import Path
from typing import Optional

import pytest
import torch
import yaml

from abtrack_ros.cli import main
from abtrack_ros.data import generate_synthetic
from abtrack_ros.model import load_checkpoint
from abtrack_ros.training.losses import TrackingCriterion

REPO = Path(__file__).resolve().parent.parent
NUM_BLOCKS = 12  # DeiT-Tiny


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synthetic")
    generate_synthetic(root, 4, 12, seed=0, difficulty="easy", size=(128, 96), split="train", real_images="off")
    generate_synthetic(root, 2, 12, seed=1, difficulty="easy", size=(128, 96), split="val", real_images="off")
    return root


def write_config(path: Path, data_root: Path, model_changes: Optional[dict] = None, **train_changes) -> Path:
    """A tiny model (32 px template, 64 px search, narrow head) on the synthetic dataset."""
    train = {
        "datasets": [{"spec": f"synthetic:{data_root}", "split": "train"}],
        "val_datasets": [{"spec": f"synthetic:{data_root}", "split": "val"}],
        "batch_size": 4, "num_workers": 0, "amp": False, "val_pairs": 8, "log_every": 2,
        # A gentle search jitter keeps the target near the middle cell: a signal within 12 steps.
        "search_jitter_center": 0.5, "search_jitter_scale": 0.1,
        # A high target bypass rate and gate learning rate: the BDMs move within 8 steps.
        "tau0": 0.9,
        "stage1_vtp": {"epochs": 3, "pairs_per_epoch": 16, "lr_backbone": 5e-4, "lr_head": 1e-2},
        "stage3_bdm": {"epochs": 2, "pairs_per_epoch": 16, "lr_backbone": 5e-5, "lr_head": 5e-4,
                       "lr_gates": 0.1},
    }
    train.update(train_changes)
    model = {"template_size": 32, "search_size": 64, "head_channels": 16, "n_enf": 3, **(model_changes or {})}
    cfg = {"name": "tiny", "model": model, "train": train}
    path.write_text(yaml.safe_dump(cfg))
    return path


def read_csv(path: Path) -> list[dict]:
    with path.open() as handle:
        return list(csv.DictReader(handle))


def tracking_loss(row: dict) -> float:
    return float(row["focal"]) + 2 * float(row["giou"]) + 5 * float(row["l1"])


def test_three_stage_pipeline_learns_and_bypasses_blocks(tmp_path, synthetic):
    config = write_config(tmp_path / "tiny.yaml", synthetic)
    out = tmp_path / "run"
    assert main(["train", "--config", str(config), "--out", str(out)]) == 0

    vtp_log = read_csv(out / "vtp" / "train_log.csv")
    first = [tracking_loss(r) for r in vtp_log if r["epoch"] == "1"]
    last = [tracking_loss(r) for r in vtp_log if r["epoch"] == "3"]
    assert sum(last) / len(last) < 0.9 * sum(first) / len(first)
    assert all(r["vtp_l1"] and not r["spar"] for r in vtp_log)

    model, cfg, extra = load_checkpoint(out / "bdm" / "model.pt")
    assert model.pruning_plan is not None and model.bdm_enabled and not model.has_vtp_masks
    assert extra["stage"] == "bdm" and cfg.model.bdm and cfg.model.prune_ratio == pytest.approx(0.3)
    # 70 % of 64 head dims per head (x3 heads) and of the 768 MLP units survive in every block.
    assert all(len(keep) == 44 * 3 for keep in model.pruning_plan.attn_keep)
    assert all(len(keep) == 537 for keep in model.pruning_plan.mlp_keep)

    val = {r["stage"]: r for r in (read_csv(out / s / "val_log.csv")[-1] for s in ("vtp", "prune", "bdm"))}
    assert float(val["vtp"]["mean_executed_blocks"]) == NUM_BLOCKS
    assert float(val["bdm"]["mean_executed_blocks"]) <= NUM_BLOCKS - 2
    for stage in ("vtp", "prune", "bdm"):
        assert (out / stage / "config.yaml").is_file() and (out / stage / "git_revision.txt").is_file()
    saved = yaml.safe_load((out / "bdm" / "config.yaml").read_text())
    assert saved["model"]["bdm"] is True and saved["train"]["tau0"] == 0.9


def _state(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


@pytest.mark.parametrize("negative_pair_prob", [0.0, 0.5])
def test_resume_is_bit_identical(tmp_path, synthetic, negative_pair_prob, monkeypatch):
    seen_present = []
    real_call = TrackingCriterion.__call__

    def recording_call(self, *args, **kwargs):  # the real loss, noting which pairs had a target
        seen_present.append(kwargs.get("present"))
        return real_call(self, *args, **kwargs)

    monkeypatch.setattr(TrackingCriterion, "__call__", recording_call)
    config = write_config(tmp_path / "tiny.yaml", synthetic, val_datasets=[], negative_pair_prob=negative_pair_prob,
                          stage1_vtp={"epochs": 2, "pairs_per_epoch": 8, "lr_backbone": 5e-4, "lr_head": 5e-3})
    common = ["train", "--config", str(config), "--stage", "vtp"]
    assert main(common + ["--out", str(tmp_path / "straight")]) == 0
    assert main(common + ["--out", str(tmp_path / "split"), "--epochs", "1"]) == 0
    assert main(common + ["--out", str(tmp_path / "split"),
                          "--resume", str(tmp_path / "split" / "vtp" / "checkpoint.pt")]) == 0
    straight, resumed = _state(tmp_path / "straight" / "vtp" / "model.pt"), _state(tmp_path / "split" / "vtp" / "model.pt")
    assert straight.keys() == resumed.keys()
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)
    one_epoch = _state(tmp_path / "split" / "vtp" / "checkpoint.pt")  # rewritten at epoch 2 by the resumed run
    assert all(torch.equal(one_epoch[k], resumed[k]) for k in straight)
    log = read_csv(tmp_path / "split" / "vtp" / "train_log.csv")
    assert [r["epoch"] for r in log] == ["1", "2"]  # the resumed run appends
    if negative_pair_prob > 0:  # the trainer hands the negative pairs' flags to the loss
        flags = torch.cat([p for p in seen_present if p is not None])
        assert len(flags) == len(seen_present) * 4 and 0 < (flags == 0).sum() < len(flags)
    else:
        assert all(p is None for p in seen_present)


def pruned_tiny_model(tmp_path: Path, synthetic: Path) -> tuple[Path, Path, Path]:
    """(config, run folder, pruned checkpoint): one short vtp epoch, then the prune stage."""
    config = write_config(tmp_path / "tiny.yaml", synthetic, val_datasets=[],
                          stage1_vtp={"epochs": 1, "pairs_per_epoch": 4})
    out = tmp_path / "run"
    assert main(["train", "--config", str(config), "--stage", "vtp", "--out", str(out)]) == 0
    pruned = tmp_path / "pruned.pt"
    assert main(["prune", "--checkpoint", str(out / "vtp" / "model.pt"), "--out", str(pruned)]) == 0
    return config, out, pruned


def test_bdm_distillation_teacher_stays_frozen_and_resumes(tmp_path, synthetic, capsys):
    config, _out, pruned = pruned_tiny_model(tmp_path, synthetic)
    plain_checkpoint = tmp_path / "plain" / "bdm" / "checkpoint.pt"
    assert main(["train", "--config", str(config), "--stage", "bdm", "--init", str(pruned),
                 "--epochs", "1", "--out", str(tmp_path / "plain")]) == 0

    distilled = write_config(tmp_path / "distilled.yaml", synthetic, val_datasets=[], distill_weight=10.0)
    common = ["train", "--config", str(distilled), "--stage", "bdm"]
    assert main(common + ["--init", str(pruned), "--out", str(tmp_path / "straight")]) == 0
    assert main(common + ["--init", str(pruned), "--out", str(tmp_path / "split"), "--epochs", "1"]) == 0
    checkpoint = tmp_path / "split" / "bdm" / "checkpoint.pt"
    teacher = torch.load(checkpoint, map_location="cpu", weights_only=True)["extra"]["train_state"]["teacher"]
    start = _state(pruned)
    assert teacher.keys() == start.keys() and all(torch.equal(teacher[k], start[k]) for k in start)
    assert main(common + ["--resume", str(checkpoint), "--out", str(tmp_path / "split")]) == 0
    straight, resumed = _state(tmp_path / "straight" / "bdm" / "model.pt"), _state(tmp_path / "split" / "bdm" / "model.pt")
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)
    assert not all(torch.equal(straight[k], start[k]) for k in start)  # the student did train
    log = read_csv(tmp_path / "split" / "bdm" / "train_log.csv")
    assert {r["epoch"] for r in log} == {"1", "2"} and all(float(r["distill"]) > 0 for r in log)
    assert all(r["distill"] == "" for r in read_csv(tmp_path / "plain" / "bdm" / "train_log.csv"))
    # A checkpoint trained without a teacher cannot be resumed with distillation switched on.
    assert main(common + ["--resume", str(plain_checkpoint), "--out", str(tmp_path / "plain")]) == 2
    assert "saved without a distillation teacher" in capsys.readouterr().err


def test_stages_run_alone_from_checkpoints_and_prune_command(tmp_path, synthetic, capsys):
    config = write_config(tmp_path / "tiny.yaml", synthetic, val_datasets=[],
                          stage1_vtp={"epochs": 1, "pairs_per_epoch": 4},
                          stage3_bdm={"epochs": 1, "pairs_per_epoch": 4, "lr_gates": 0.1})
    out = tmp_path / "run"
    assert main(["train", "--config", str(config), "--stage", "vtp", "--out", str(out)]) == 0
    vtp = out / "vtp" / "model.pt"
    # bdm needs a pruned model (no relaxed masks left).
    assert main(["train", "--config", str(config), "--stage", "bdm", "--init", str(vtp), "--out", str(out)]) == 2
    assert "run the prune stage first" in capsys.readouterr().err
    pruned = tmp_path / "pruned.pt"
    assert main(["prune", "--checkpoint", str(vtp), "--out", str(pruned), "--ratio", "0.5"]) == 0
    model, cfg, _ = load_checkpoint(pruned)
    assert cfg.model.prune_ratio == 0.5 and all(len(k) == 32 * 3 for k in model.pruning_plan.attn_keep)
    assert main(["prune", "--checkpoint", str(pruned), "--out", str(tmp_path / "again.pt")]) == 2
    assert "no relaxed VTP masks" in capsys.readouterr().err
    assert main(["train", "--config", str(config), "--stage", "bdm", "--init", str(pruned), "--out", str(out)]) == 0
    final, _, extra = load_checkpoint(out / "bdm" / "model.pt")
    assert final.bdm_enabled and final.pruning_plan.ratio == 0.5 and extra["stage"] == "bdm"
    # A finished stage's model file is not a resumable checkpoint; a vtp checkpoint is not a bdm one.
    assert main(["train", "--stage", "bdm", "--resume", str(out / "bdm" / "model.pt"), "--out", str(out)]) == 2
    assert "not a resumable training checkpoint" in capsys.readouterr().err
    assert main(["train", "--stage", "bdm", "--resume", str(out / "vtp" / "checkpoint.pt"), "--out", str(out)]) == 2
    assert "checkpoint of stage vtp" in capsys.readouterr().err


def test_bdm_stage_adds_search_reading_bdms_and_a_quality_head_to_a_trained_model(tmp_path, synthetic):
    _config, out, pruned = pruned_tiny_model(tmp_path, synthetic)
    assert load_checkpoint(pruned)[1].model.bdm_input == "token"
    assert load_checkpoint(pruned)[0].quality is None
    reading = write_config(tmp_path / "reading.yaml", synthetic, {"bdm_input": "token_search_mean", "quality_head": True},
                           val_datasets=[])
    assert main(["train", "--config", str(reading), "--stage", "bdm", "--init", str(pruned),
                 "--epochs", "1", "--out", str(out)]) == 0
    for name in ("checkpoint.pt", "model.pt"):
        model, cfg, _ = load_checkpoint(out / "bdm" / name)
        assert cfg.model.bdm_input == "token_search_mean" and model.bdm_input == "token_search_mean"
        assert cfg.model.quality_head and model.quality is not None
    saved = yaml.safe_load((out / "bdm" / "config.yaml").read_text())["model"]
    assert saved["bdm_input"] == "token_search_mean" and saved["quality_head"] is True
    # the added weights start at zero and were trained: the BDMs' with the other gate parameters,
    # the quality head's by its loss (logged)
    assert all(float(d.search_linear.weight.detach().abs().sum()) > 0 for d in model.backbone.decisions)
    assert float(model.quality.out.weight.detach().abs().sum()) > 0
    assert all(float(row["quality"]) > 0 for row in read_csv(out / "bdm" / "train_log.csv"))
    # a resumed stage keeps them
    assert main(["train", "--stage", "bdm", "--resume", str(out / "bdm" / "checkpoint.pt"),
                 "--epochs", "2", "--out", str(out)]) == 0
    resumed = load_checkpoint(out / "bdm" / "model.pt")[0]
    assert resumed.bdm_input == "token_search_mean" and resumed.quality is not None
    # a stage started from it with a config that leaves the fields at their defaults keeps the parts
    plain = write_config(tmp_path / "plain.yaml", synthetic, val_datasets=[])
    assert main(["train", "--config", str(plain), "--stage", "bdm", "--init", str(out / "bdm" / "model.pt"),
                 "--epochs", "1", "--out", str(tmp_path / "again")]) == 0
    again = load_checkpoint(tmp_path / "again" / "bdm" / "model.pt")[0]
    assert again.bdm_input == "token_search_mean" and again.quality is not None


def test_clear_errors_for_bad_data_and_config(tmp_path, synthetic, capsys):
    config = write_config(tmp_path / "tiny.yaml", synthetic)
    base = ["train", "--config", str(config), "--out", str(tmp_path / "run")]
    assert main(base + ["--data", f"got10k:{tmp_path / 'missing'}"]) == 2
    assert "dataset path not found" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(base + ["--data", f"got10k:{empty}"]) == 2
    assert "no sequences found" in capsys.readouterr().err
    bad = yaml.safe_load(config.read_text())
    bad["train"]["stage1_vtp"]["learning_rate"] = 0.1
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(bad))
    assert main(["train", "--config", str(tmp_path / "bad.yaml"), "--out", str(tmp_path / "run")]) == 2
    assert "unknown config key 'train.stage1_vtp.learning_rate'" in capsys.readouterr().err
    assert main(["train", "--out", str(tmp_path / "run")]) == 2
    assert "--config" in capsys.readouterr().err


def test_ddp_two_processes_with_gloo(tmp_path, synthetic):
    # All three stages: the gated bdm stage (BDMs trained, blocks skipped in the forward pass) and
    # the prune stage in between (every process slices its own copy) run under DDP too.
    config = write_config(tmp_path / "tiny.yaml", synthetic, val_datasets=[], batch_size=2,
                          stage1_vtp={"epochs": 1, "pairs_per_epoch": 8},
                          stage3_bdm={"epochs": 1, "pairs_per_epoch": 8, "lr_gates": 0.1})
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               "-m", "abtrack_ros.cli", "train", "--config", str(config), "--stage", "all",
               "--out", str(tmp_path / "ddp"), "--device", "cpu"]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    for stage in ("vtp", "bdm"):
        log = read_csv(tmp_path / "ddp" / stage / "train_log.csv")
        # 8 pairs over 2 processes at 2 per step: 2 steps, and the pairs count covers both processes.
        assert [r["step"] for r in log] == ["2"] and log[-1]["pairs"] == "8"
    model, _, extra = load_checkpoint(tmp_path / "ddp" / "vtp" / "model.pt")
    assert extra["stage"] == "vtp" and model.has_vtp_masks
    final, _, extra = load_checkpoint(tmp_path / "ddp" / "bdm" / "model.pt")
    assert extra["stage"] == "bdm" and final.bdm_enabled and final.pruning_plan is not None
