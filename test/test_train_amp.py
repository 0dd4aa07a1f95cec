"""bf16 autocast training on CPU (train.amp_cpu): the CPU check, fp32/bf16 loss and gradient
parity through the trainer's own forward and loss, and a short training run."""
import dataclasses
from pathlib import Path

import pytest
import torch
import yaml
from torch.utils.data import default_collate

from abtrack_ros.cli import main
from abtrack_ros.config import ABTrackConfig, TrainConfig, load_config
from abtrack_ros.data import generate_synthetic, open_dataset
from abtrack_ros.model import ABTrackModel, build_model, default_checkpoint_path, load_checkpoint
from abtrack_ros.training import precision
from abtrack_ros.training.distributed import DistributedContext
from abtrack_ros.training.losses import l1_box_loss
from abtrack_ros.training.precision import PrecisionError, autocast_dtype, cpu_has_native_bf16
from abtrack_ros.training.sampler import PairDataset, PairSettings, WeightedSource
from abtrack_ros.training.trainer import StageTrainer, float32_boxes, prepare_for_stage

from test_train_pipeline import read_csv, synthetic, write_config  # noqa: F401 (synthetic: a fixture)

REPO = Path(__file__).resolve().parent.parent
DEFAULT_CPU_CONFIG = REPO / "config" / "models" / "abtrack_default_cpu.yaml"
CPU = torch.device("cpu")
PARITY_PAIRS = 16
# The stated parity: every loss term of a bf16-autocast step within this relative difference of
# the fp32 step (absolute floor for terms near 0), and the gradients pointing the same way.
# Measured on this CPU with these pairs: at most 0.07 % (random init) and 0.43 % (the trained
# model) per term, cosine 0.995 and 0.992; over 6 other batches of 8 pairs of the trained model up
# to 1.5 % and cosine >= 0.983.
LOSS_RTOL = 0.03
LOSS_ATOL = 1e-3
GRAD_COSINE_MIN = 0.97


@pytest.fixture
def native_bf16(monkeypatch):
    """These tests check bf16 numerics, not speed, and emulated bf16 rounds to the same format: run
    them on CPUs without native bf16 too."""
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)


@pytest.fixture(scope="module")
def default_cfg() -> ABTrackConfig:
    return load_config(DEFAULT_CPU_CONFIG)


@pytest.fixture(scope="module")
def pair_batch(tmp_path_factory, default_cfg) -> dict[str, torch.Tensor]:
    """Fixed training pairs at the default model's crop sizes, with the training augmentation."""
    root = tmp_path_factory.mktemp("parity")
    generate_synthetic(root, 4, 12, seed=0, difficulty="easy", size=(128, 96), split="train", real_images="off")
    data = PairDataset([WeightedSource("synthetic", open_dataset(f"synthetic:{root}", "train"), 1.0)],
                       PairSettings.from_config(default_cfg), seed=0)
    return default_collate([data[(0, k)] for k in range(PARITY_PAIRS)])


def step_in(model: ABTrackModel, cfg: ABTrackConfig, stage: str, amp_cpu: bool, batch: dict,
            folder: Path) -> tuple:
    """One forward + loss + backward through the trainer's own code; (output, terms, gradients of
    the trainable parameters, None where a parameter got none)."""
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, amp_cpu=amp_cpu))
    ctx = DistributedContext(rank=0, world_size=1, local_rank=0, device=CPU)
    trainer = StageTrainer(stage, model, cfg, ctx, folder, "test")
    model.zero_grad(set_to_none=True)
    out, terms = trainer.forward_loss(model, batch)
    terms.total.backward()
    grads = {n: p.grad if p.grad is None else p.grad.clone()
             for n, p in model.named_parameters() if p.requires_grad}
    return out, terms, grads


def assert_parity(model: ABTrackModel, cfg: ABTrackConfig, stage: str, batch: dict, folder: Path) -> tuple:
    """The stated parity between a float32 and a bf16 step; (out32, out16, terms16, grads16)."""
    out32, terms32, grads32 = step_in(model, cfg, stage, False, batch, folder)
    out16, terms16, grads16 = step_in(model, cfg, stage, True, batch, folder)
    assert out32.score_map.dtype == torch.float32 and out16.score_map.dtype == torch.bfloat16
    assert terms16.total.dtype == torch.float32  # the losses are computed in float32
    assert terms16.terms != terms32.terms  # bf16 really ran
    for key, value in terms32.terms.items():
        assert terms16.terms[key] == pytest.approx(value, rel=LOSS_RTOL, abs=LOSS_ATOL), key
    reached = [n for n, g in grads32.items() if g is not None]
    assert reached == [n for n, g in grads16.items() if g is not None]
    for name in reached:  # finite float32 gradients: the master weights stay float32
        assert grads16[name].dtype == torch.float32 and torch.isfinite(grads16[name]).all(), name
    flat32 = torch.cat([grads32[n].flatten() for n in reached])
    flat16 = torch.cat([grads16[n].flatten() for n in reached])
    assert flat16.abs().sum() > 0
    assert torch.nn.functional.cosine_similarity(flat32, flat16, dim=0) >= GRAD_COSINE_MIN
    return out32, out16, terms16, grads16


def test_cpu_bf16_flags_are_read_from_cpuinfo(tmp_path):
    cases = {"flags\t\t: fpu sse avx512f avx512_bf16 amx_tile\n": True,
             "flags\t\t: fpu sse avx512f amx_bf16\n": True,
             "flags\t\t: fpu sse avx2 avx512f avx512bw\n": False,
             "Features\t: fp asimd sve bf16 i8mm\n": True,
             "model name\t: bf16 in a name is not a flag\n": False}
    for i, (text, expected) in enumerate(cases.items()):
        (tmp_path / str(i)).write_text("processor\t: 0\n" + text)
        assert cpu_has_native_bf16(tmp_path / str(i)) is expected, text
    assert cpu_has_native_bf16(tmp_path / "missing") is False


def test_precision_per_device_and_a_cpu_without_bf16_is_an_error(tmp_path, monkeypatch, capsys):
    assert autocast_dtype(TrainConfig(), CPU) is None  # train.amp is CUDA-only
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    assert autocast_dtype(TrainConfig(amp_cpu=True), CPU) == torch.bfloat16
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)
    assert autocast_dtype(TrainConfig(amp_cpu=False), CPU) is None
    with pytest.raises(PrecisionError, match="train.amp_cpu: false"):
        autocast_dtype(TrainConfig(amp_cpu=True), CPU)
    # Through the command: a one-line error before any data is read or any file written.
    config = write_config(tmp_path / "tiny.yaml", tmp_path / "no_data", amp_cpu=True)
    out = tmp_path / "run"
    assert main(["train", "--config", str(config), "--device", "cpu", "--out", str(out)]) == 2
    assert "abtrack train: error: train.amp_cpu: true needs a CPU with native bf16" in capsys.readouterr().err
    assert not out.exists()


def test_bf16_parity_random_init_stage_vtp(tmp_path, native_bf16, default_cfg, pair_batch):
    torch.manual_seed(0)
    model = build_model(dataclasses.replace(default_cfg.model, vtp_masks=True, bdm=False))
    model = prepare_for_stage(model, "vtp").train()
    _, _, _, grads = assert_parity(model, default_cfg, "vtp", pair_batch, tmp_path)
    assert all(g is not None for g in grads.values())  # the gradient reaches every trainable parameter


def test_bf16_parity_trained_model_and_float32_boxes(tmp_path, native_bf16, pair_batch):
    model, cfg, _ = load_checkpoint(default_checkpoint_path())
    model = prepare_for_stage(model, "bdm").train()
    # BDMs off: a hard gate decision flips where p is within bf16 rounding of the threshold,
    # a discrete change that parity cannot bound.
    model.bdm_enabled = False
    out32, out16, terms16, _ = assert_parity(model, cfg, "bdm", pair_batch, tmp_path)
    # The trainer's losses use the boxes decoded again in float32, and those are nearer the fp32
    # step's than the model's own bf16-decoded boxes.
    l1_float32 = l1_box_loss(float32_boxes(out16), pair_batch["box"]).item()
    assert terms16.terms["l1"] == pytest.approx(l1_float32, rel=1e-6)
    assert l1_box_loss(out16.boxes.float(), pair_batch["box"]).item() != pytest.approx(l1_float32, rel=1e-6)
    reference = out32.boxes.detach()
    trainer_error = (float32_boxes(out16).detach() - reference).abs().mean()
    model_error = (out16.boxes.detach().float() - reference).abs().mean()
    assert trainer_error < model_error


def test_short_bf16_training_run_saves_the_key(tmp_path, native_bf16, synthetic):
    common = {"val_datasets": [], "stage1_vtp": {"epochs": 1, "pairs_per_epoch": 8}, "log_every": 1}
    runs = {}
    for amp_cpu in (False, True):
        config = write_config(tmp_path / f"amp_{amp_cpu}.yaml", synthetic, amp_cpu=amp_cpu, **common)
        out = tmp_path / f"run_{amp_cpu}"
        command = ["train", "--config", str(config), "--stage", "vtp", "--device", "cpu", "--out", str(out)]
        assert main(command) == 0
        saved = yaml.safe_load((out / "vtp" / "config.yaml").read_text())
        assert saved["train"]["amp_cpu"] is amp_cpu
        runs[amp_cpu] = [float(r["loss"]) for r in read_csv(out / "vtp" / "train_log.csv")]
    assert len(runs[True]) == 2 and all(torch.isfinite(torch.tensor(runs[True])))
    assert runs[True] != runs[False] and runs[True] == pytest.approx(runs[False], rel=LOSS_RTOL)
    # Master weights and optimizer state stay float32.
    state = torch.load(tmp_path / "run_True" / "vtp" / "checkpoint.pt", map_location="cpu", weights_only=True)
    assert all(v.dtype == torch.float32 for v in state["state_dict"].values() if v.is_floating_point())
    moments = state["extra"]["train_state"]["optimizer"]["state"].values()
    assert moments and all(s["exp_avg"].dtype == torch.float32 for s in moments)
