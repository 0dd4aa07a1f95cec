"""The three-stage pipeline of section 3.1: VTP training, pruning, BDM fine-tuning.

1. ``vtp``: the tracker with relaxed VTP masks (model.vtp_masks on, BDMs off and frozen) trained
   with eq. 8 (without the sparsity term) plus the mask L1 term of eq. 6;
2. ``prune``: binarise the masks block by block and slice the blocks (``prune_model``);
3. ``bdm``: switch the BDMs on in the pruned model and fine-tune with eq. 8 including L_spar.

Every stage can run alone from a checkpoint (``init``). A stage folder ``OUT/<stage>/`` holds
``checkpoint.pt`` (rewritten each epoch, with the optimizer state, for ``--resume``),
``model.pt`` (the stage's result), ``config.yaml``, ``git_revision.txt``, ``train_log.csv``
and ``val_log.csv``.
"""
from __future__ import annotations

import copy
import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from abtrack_ros.config import ABTrackConfig, DatasetSpec, StageConfig, TrainConfig, load_config
from abtrack_ros.data import open_dataset
from abtrack_ros.model import (
    BDM_INPUTS,
    ABTrackModel,
    ModelOutput,
    add_model_parts,
    build_model,
    config_for_model,
    decode_boxes,
    load_checkpoint,
    prune_model,
    save_checkpoint,
)

from .distributed import DistributedContext
from .losses import SPARSITY_SPREADS, LossTerms, LossWeights, TrackingCriterion, giou_and_iou
from .precision import AMP_DTYPES, PrecisionError, autocast_dtype
from .reporting import CsvLog, Progress, format_metrics, git_revision, write_run_record
from .sampler import (
    VALIDATION_STREAM,
    EpochShardSampler,
    FixedItemsSampler,
    PairDataset,
    PairSettings,
    WeightedSource,
)

STAGES = ("vtp", "prune", "bdm")
STAGE_CHOICES = ("all",) + STAGES
CHECKPOINT_FILE = "checkpoint.pt"
MODEL_FILE = "model.pt"
# Parameters a stage adds (learning rate lr_gates): the BDMs, the bypass token, the VTP masks.
GATE_PARAM_PREFIXES = ("backbone.decisions.", "backbone.bypass_token")
MASK_PARAM_SUFFIXES = (".inner_mask", ".hidden_mask")
TRAIN_COLUMNS = ["stage", "epoch", "step", "pairs", "lr_backbone", "loss", "focal", "giou", "l1",
                 "spar", "tau_std", "vtp_l1", "distill", "quality", "iou", "executed_blocks", "pairs_per_s"]
VAL_COLUMNS = ["stage", "epoch", "pairs", "mean_iou", "mean_executed_blocks", "num_blocks"]


class TrainingError(ValueError):
    """A training run that cannot start or continue as asked (bad options, wrong checkpoint)."""


@dataclass
class TrainOptions:
    """What ``abtrack train`` was asked to do; None = take it from the config."""

    out_dir: Path
    config: Optional[Path] = None
    stage: str = "all"
    init: Optional[Path] = None
    resume: Optional[Path] = None
    data: Optional[list[str]] = None
    val_data: Optional[list[str]] = None
    epochs: Optional[int] = None
    pairs_per_epoch: Optional[int] = None
    batch_size: Optional[int] = None
    num_workers: Optional[int] = None
    prune_ratio: Optional[float] = None
    device: Optional[str] = None
    amp_cpu: Optional[bool] = None


@dataclass
class StageResult:
    stage: str
    model_path: Path
    validation: dict[str, float] = field(default_factory=dict)


# --------------------------------------------------------------------------- configuration
def stage_config(cfg: ABTrackConfig, stage: str) -> StageConfig:
    return cfg.train.stage1_vtp if stage == "vtp" else cfg.train.stage3_bdm


def apply_overrides(cfg: ABTrackConfig, opts: TrainOptions) -> ABTrackConfig:
    """The config with the command-line overrides (they apply to both training stages)."""
    train = cfg.train
    stage_changes = {k: v for k, v in (("epochs", opts.epochs), ("pairs_per_epoch", opts.pairs_per_epoch))
                     if v is not None}
    changes: dict = {
        "stage1_vtp": dataclasses.replace(train.stage1_vtp, **stage_changes),
        "stage3_bdm": dataclasses.replace(train.stage3_bdm, **stage_changes),
    }
    if opts.batch_size is not None:
        changes["batch_size"] = opts.batch_size
    if opts.num_workers is not None:
        changes["num_workers"] = opts.num_workers
    if opts.amp_cpu is not None:
        changes["amp_cpu"] = opts.amp_cpu
    if opts.data:
        changes["datasets"] = [DatasetSpec(spec=s) for s in opts.data]
    if opts.val_data:
        changes["val_datasets"] = [DatasetSpec(spec=s) for s in opts.val_data]
    model = cfg.model
    if opts.prune_ratio is not None:
        model = dataclasses.replace(model, prune_ratio=opts.prune_ratio)
    return dataclasses.replace(cfg, model=model, train=dataclasses.replace(train, **changes))


def validate_train_config(cfg: ABTrackConfig) -> None:
    """Value checks the schema cannot express; raises TrainingError naming the key."""
    t = cfg.train
    checks = [
        (t.batch_size >= 1, "train.batch_size must be >= 1"),
        (t.num_workers >= 0, "train.num_workers must be >= 0"),
        (t.grad_clip > 0, "train.grad_clip must be > 0"),
        (t.weight_decay >= 0, "train.weight_decay must be >= 0"),
        (t.amp_dtype in AMP_DTYPES, f"train.amp_dtype must be one of {', '.join(AMP_DTYPES)}"),
        (t.max_frame_gap >= 0, "train.max_frame_gap must be >= 0"),
        (0.0 <= t.tau0 <= 1.0, "train.tau0 must be in [0, 1]"),
        (t.sparsity_slope >= 0, "train.sparsity_slope must be >= 0"),
        (t.sparsity_spread in SPARSITY_SPREADS,
         f"train.sparsity_spread must be one of {', '.join(SPARSITY_SPREADS)}"),
        (t.val_pairs >= 0, "train.val_pairs must be >= 0"),
        (t.log_every >= 1, "train.log_every must be >= 1"),
        (0.0 <= t.grayscale_prob <= 1.0 and 0.0 <= t.flip_prob <= 1.0,
         "train.grayscale_prob and train.flip_prob must be in [0, 1]"),
        (0.0 <= t.brightness_jitter < 1.0, "train.brightness_jitter must be in [0, 1)"),
        (0.0 <= t.negative_pair_prob < 1.0, "train.negative_pair_prob must be in [0, 1)"),
        (0.0 <= t.degrade_prob <= 1.0, "train.degrade_prob must be in [0, 1]"),
        (t.gate_noise >= 0, "train.gate_noise must be >= 0"),
        (cfg.model.bdm_input in BDM_INPUTS, f"model.bdm_input must be one of {', '.join(BDM_INPUTS)}"),
        (min(t.focal_weight, t.giou_weight, t.l1_weight, t.sparsity_weight, t.vtp_l1_weight,
             t.distill_weight, t.quality_weight) >= 0,
         "train loss weights must be >= 0"),
    ]
    for name in ("stage1_vtp", "stage3_bdm"):
        s: StageConfig = getattr(t, name)
        lrs = [s.lr_backbone, s.lr_head] + [lr for lr in (s.lr_gates, s.lr_quality) if lr is not None]
        checks += [
            (s.epochs >= 1, f"train.{name}.epochs must be >= 1"),
            (s.pairs_per_epoch >= 1, f"train.{name}.pairs_per_epoch must be >= 1"),
            (min(lrs) > 0, f"train.{name} learning rates must be > 0"),
            (s.lr_drop_factor > 0, f"train.{name}.lr_drop_factor must be > 0"),
            (s.lr_drop_epoch is None or s.lr_drop_epoch >= 0, f"train.{name}.lr_drop_epoch must be >= 0"),
            (not (s.lr_steps and s.lr_drop_epoch is not None),
             f"train.{name}: give lr_drop_epoch or lr_steps, not both"),
            (all(step.factor > 0 for step in s.lr_steps), f"train.{name}.lr_steps factors must be > 0"),
            ([step.epoch for step in s.lr_steps] == sorted({step.epoch for step in s.lr_steps})
             and all(step.epoch >= 0 for step in s.lr_steps),
             f"train.{name}.lr_steps epochs must be >= 0 and strictly increasing"),
        ]
    for spec in t.datasets + t.val_datasets:
        checks.append((spec.weight > 0, f"dataset {spec.spec!r}: weight must be > 0"))
    for ok, message in checks:
        if not ok:
            raise TrainingError(message)


def forward_dtype(cfg: ABTrackConfig, device: torch.device) -> Optional[torch.dtype]:
    """The autocast dtype of the training forward pass (None = float32); a device that cannot run
    the asked precision is a TrainingError (a one-line CLI error)."""
    try:
        return autocast_dtype(cfg.train, device)
    except PrecisionError as exc:
        raise TrainingError(str(exc)) from None


def loss_weights(cfg: ABTrackConfig) -> LossWeights:
    t = cfg.train
    return LossWeights(focal=t.focal_weight, giou=t.giou_weight, l1=t.l1_weight,
                       sparsity=t.sparsity_weight, tau0=t.tau0, sparsity_slope=t.sparsity_slope,
                       adaptive_tau=t.adaptive_tau, sparsity_spread=t.sparsity_spread, vtp_l1=t.vtp_l1_weight,
                       distill=t.distill_weight, quality=t.quality_weight)


def load_sources(specs: list[DatasetSpec], what: str) -> list[WeightedSource]:
    """Read every dataset of a list (DatasetError names a wrong path or an empty folder)."""
    if not specs:
        raise TrainingError(f"no {what} datasets: pass --data FORMAT:PATH or set train.datasets")
    return [WeightedSource(s.spec, open_dataset(s.spec, s.split), s.weight) for s in specs]


# --------------------------------------------------------------------------- model preparation
def prepare_for_stage(model: ABTrackModel, stage: str) -> ABTrackModel:
    """Set the switches and trainable parameters a training stage expects (idempotent)."""
    gate_params = [p for n, p in model.named_parameters() if n.startswith(GATE_PARAM_PREFIXES)]
    if stage == "vtp":
        if model.pruning_plan is not None:
            raise TrainingError("stage vtp needs an unpruned model; this checkpoint is already pruned")
        if not model.has_vtp_masks:
            model.add_vtp_masks()
        model.bdm_enabled = False
        for p in gate_params:  # the BDMs are unused here and stay at their initial values
            p.requires_grad_(False)
    elif stage == "bdm":
        if model.has_vtp_masks:
            raise TrainingError("stage bdm needs a model without relaxed VTP masks: run the prune stage "
                                "first (abtrack prune --checkpoint IN --out OUT)")
        model.bdm_enabled = True
        for p in gate_params:
            p.requires_grad_(True)
    else:
        raise TrainingError(f"unknown training stage {stage!r}")
    return model


def param_groups(model: nn.Module, s: StageConfig, weight_decay: float) -> list[dict]:
    """AdamW groups: backbone, head, gates (BDMs, bypass token), VTP masks (no weight decay:
    their regulariser is the L1 term) and the quality head."""
    named: dict[str, list[nn.Parameter]] = {"backbone": [], "head": [], "gates": [], "masks": [], "quality": []}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if name.endswith(MASK_PARAM_SUFFIXES):
            named["masks"].append(param)
        elif name.startswith(GATE_PARAM_PREFIXES):
            named["gates"].append(param)
        elif name.startswith("head."):
            named["head"].append(param)
        elif name.startswith("quality."):
            named["quality"].append(param)
        else:
            named["backbone"].append(param)
    lr_gates = s.lr_head if s.lr_gates is None else s.lr_gates
    lr_quality = s.lr_head if s.lr_quality is None else s.lr_quality
    settings = {"backbone": (s.lr_backbone, weight_decay), "head": (s.lr_head, weight_decay),
                "gates": (lr_gates, weight_decay), "masks": (lr_gates, 0.0), "quality": (lr_quality, weight_decay)}
    return [{"name": name, "params": params, "lr": settings[name][0], "base_lr": settings[name][0],
             "weight_decay": settings[name][1]}
            for name, params in named.items() if params]


def lr_factor(s: StageConfig, epoch: int) -> float:
    """Factor of the base learning rates in (0-based) ``epoch``: the last reached ``lr_steps``
    entry, else the step decay (x lr_drop_factor from epoch lr_drop_epoch on)."""
    if s.lr_steps:
        return next((step.factor for step in reversed(s.lr_steps) if epoch >= step.epoch), 1.0)
    return s.lr_drop_factor if s.lr_drop_epoch is not None and epoch >= s.lr_drop_epoch else 1.0


def epoch_seed(seed: int, stage: str, epoch: int, rank: int) -> int:
    """Torch seed of one epoch on one process: resumption needs no saved RNG state."""
    return int(np.random.SeedSequence([seed, STAGES.index(stage), epoch, rank]).generate_state(1)[0])


def _plain_optimizer_state(state: dict) -> dict:
    """Checkpoints hold plain data with string keys: the per-parameter state is keyed by index."""
    return {"state": {str(k): v for k, v in state["state"].items()}, "param_groups": state["param_groups"]}


def _torch_optimizer_state(state: dict) -> dict:
    return {"state": {int(k): v for k, v in state["state"].items()}, "param_groups": state["param_groups"]}


def train_loader(data: PairDataset, sampler: EpochShardSampler, train: TrainConfig,
                 device: torch.device) -> DataLoader:
    """The training stage's data loader (also measured by benchmarks/train_throughput.py)."""
    return DataLoader(data, batch_size=train.batch_size, sampler=sampler, num_workers=train.num_workers,
                      pin_memory=device.type == "cuda", persistent_workers=train.num_workers > 0)


def float32_boxes(out: ModelOutput) -> torch.Tensor:
    """The boxes decoded again from the maps in float32 (the same values when the maps are float32).
    Under bf16 autocast the model decodes in bf16, whose 8-bit mantissa rounds ``cell + offset`` and
    its division by the map size: the centre moves by up to about 0.002 of the crop, a fifth of a
    trained model's L1 loss."""
    return decode_boxes(out.score_map.float(), out.offset_map.float(), out.size_map.float())[0]


# --------------------------------------------------------------------------- validation
@torch.no_grad()
def evaluate(model: ABTrackModel, data: PairDataset, num_pairs: int, batch_size: int,
             device: torch.device) -> dict[str, float]:
    """Mean IoU of the predicted box and mean number of executed blocks on fixed pairs (eval mode:
    the BDMs really skip blocks)."""
    was_training = model.training
    model.eval()
    loader = DataLoader(data, batch_size=batch_size,
                        sampler=FixedItemsSampler([(VALIDATION_STREAM, k) for k in range(num_pairs)]))
    ious, blocks = [], []
    for batch in loader:
        out = model(batch["template"].to(device), batch["search"].to(device))
        _, iou = giou_and_iou(out.boxes.float(), batch["box"].to(device))
        ious.append(iou.cpu())
        blocks.append(out.executed.sum(dim=1).float().cpu())
    model.train(was_training)
    return {"pairs": float(num_pairs), "mean_iou": torch.cat(ious).mean().item(),
            "mean_executed_blocks": torch.cat(blocks).mean().item()}


# --------------------------------------------------------------------------- one training stage
class StageTrainer:
    """Runs the epochs of one training stage (vtp or bdm) on this process's share of the pairs."""

    def __init__(self, stage: str, model: ABTrackModel, cfg: ABTrackConfig, ctx: DistributedContext,
                 folder: Path, revision: str) -> None:
        self.stage, self.model, self.cfg, self.ctx = stage, model, cfg, ctx
        self.folder, self.revision = folder, revision
        self.settings = stage_config(cfg, stage)
        model.backbone.gate_noise = cfg.train.gate_noise if stage == "bdm" else 0.0
        self.criterion = TrackingCriterion(loss_weights(cfg), map_size=model.backbone.search_side)
        self.optimizer = torch.optim.AdamW(param_groups(model, self.settings, cfg.train.weight_decay))
        self.amp_dtype = forward_dtype(cfg, ctx.device)
        self.scaler = torch.amp.GradScaler(ctx.device.type, enabled=self.amp_dtype == torch.float16)
        self.log = CsvLog(folder / "train_log.csv", TRAIN_COLUMNS) if ctx.is_main else None
        self.teacher = self._distillation_teacher()

    def _distillation_teacher(self) -> Optional[ABTrackModel]:
        """The frozen copy of the model as the BDM stage starts, with every block run (only with
        train.distill_weight > 0); a resumed stage restores it from its checkpoint."""
        if self.stage != "bdm" or self.cfg.train.distill_weight == 0:
            return None
        teacher = copy.deepcopy(self.model)
        teacher.bdm_enabled = False
        teacher.requires_grad_(False)
        return teacher.eval()

    def load_state(self, state: dict) -> int:
        """Restore the optimizer and scaler; returns the number of completed epochs."""
        try:
            self.optimizer.load_state_dict(_torch_optimizer_state(state["optimizer"]))
            if state.get("scaler"):
                self.scaler.load_state_dict(state["scaler"])
        except (KeyError, ValueError) as exc:
            raise TrainingError(f"the checkpoint's optimizer state does not fit this stage: {exc}") from None
        if self.teacher is not None:
            if "teacher" not in state:
                raise TrainingError("train.distill_weight > 0 but the checkpoint was saved without a "
                                    "distillation teacher: resume with the config it was trained with")
            self.teacher.load_state_dict(state["teacher"])
        return int(state["epoch"])

    def fit(self, data: PairDataset, start_epoch: int = 0) -> None:
        t = self.cfg.train
        sampler = EpochShardSampler(self.settings.pairs_per_epoch, self.ctx.rank, self.ctx.world_size)
        loader = train_loader(data, sampler, t, self.ctx.device)
        network = self.ctx.wrap(self.model)
        self.model.train()
        for epoch in range(start_epoch, self.settings.epochs):
            sampler.set_epoch(epoch)
            torch.manual_seed(epoch_seed(t.seed, self.stage, epoch, self.ctx.rank))
            for group in self.optimizer.param_groups:
                group["lr"] = group["base_lr"] * lr_factor(self.settings, epoch)
            self._train_epoch(network, loader, epoch)
            self._save_epoch(epoch + 1)

    def _train_epoch(self, network: nn.Module, loader: DataLoader, epoch: int) -> None:
        t = self.cfg.train
        progress = Progress(len(loader), f"{self.stage} epoch {epoch + 1}/{self.settings.epochs}",
                            self.ctx.is_main)
        sums: dict[str, float] = {}
        counts: dict[str, int] = {}  # per key: a step of negative pairs only has no iou
        pairs, interval_start = 0, time.perf_counter()
        for step, batch in enumerate(loader, start=1):
            metrics = self.train_step(network, batch)
            for key, value in metrics.items():
                sums[key] = sums.get(key, 0.0) + value
                counts[key] = counts.get(key, 0) + 1
            pairs += batch["box"].shape[0] * self.ctx.world_size
            progress.step()
            if step % t.log_every == 0 or step == len(loader):
                elapsed = max(time.perf_counter() - interval_start, 1e-9)
                row = {k: v / counts[k] for k, v in sums.items()}
                row["pairs_per_s"] = pairs / elapsed
                progress.report(row)
                if self.log is not None:
                    self.log.write({"stage": self.stage, "epoch": epoch + 1, "step": step,
                                    "pairs": step * t.batch_size * self.ctx.world_size,
                                    "lr_backbone": self.optimizer.param_groups[0]["lr"], **row})
                sums, counts, pairs, interval_start = {}, {}, 0, time.perf_counter()
        progress.close()

    def forward_loss(self, network: nn.Module,
                     batch: dict[str, torch.Tensor]) -> tuple[ModelOutput, LossTerms]:
        """The forward pass (under autocast when mixed precision is on) and the float32 losses."""
        device = self.ctx.device
        template = batch["template"].to(device, non_blocking=True)
        search = batch["search"].to(device, non_blocking=True)
        target = batch["box"].to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=self.amp_dtype or torch.float32,
                            enabled=self.amp_dtype is not None):
            out = network(template, search)
            teacher = None
            if self.teacher is not None:
                with torch.no_grad():
                    teacher_out = self.teacher(template, search)
                teacher = (teacher_out.score_map, float32_boxes(teacher_out))
        terms = self.criterion(
            out.score_map, float32_boxes(out), target,
            bypass_probs=out.bypass_probs if self.stage == "bdm" else None,
            n_enf=self.model.n_enf,
            mask_l1=self.model.l1_masks() if self.stage == "vtp" else None,
            teacher=teacher,
            present=batch["present"].to(device) if self.cfg.train.negative_pair_prob > 0 else None,
            quality=(out.quality_map, out.offset_map, out.size_map) if out.quality_map is not None else None,
        )
        return out, terms

    def train_step(self, network: nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        """One optimizer step (forward, losses, backward, clipping, update); the step's metrics."""
        out, terms = self.forward_loss(network, batch)
        if not torch.isfinite(terms.total):
            raise TrainingError(f"non-finite loss in stage {self.stage}: {format_metrics(terms.terms)}")
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(terms.total).backward()
        self.scaler.unscale_(self.optimizer)
        torch.nn.utils.clip_grad_norm_([p for g in self.optimizer.param_groups for p in g["params"]],
                                       self.cfg.train.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        metrics = dict(terms.terms)
        if terms.iou.numel():  # a batch of negative pairs only has no box to score
            metrics["iou"] = terms.iou.mean().item()
        metrics["executed_blocks"] = out.executed.sum(dim=1).float().mean().item()
        return metrics

    def _save_epoch(self, completed: int) -> None:
        if self.ctx.is_main:
            state = {"epoch": completed,
                     "optimizer": _plain_optimizer_state(self.optimizer.state_dict()),
                     "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else {}}
            if self.teacher is not None:
                state["teacher"] = {k: v.detach().cpu() for k, v in self.teacher.state_dict().items()}
            extra = {"stage": self.stage, "epoch": completed, "git_revision": self.revision,
                     "train_state": state}
            save_checkpoint(self.folder / CHECKPOINT_FILE, self.model, self.cfg, extra)
        self.ctx.barrier()


# --------------------------------------------------------------------------- the pipeline
def prune_checkpoint(source: Path, out: Path, ratio: Optional[float] = None) -> Path:
    """``abtrack prune``: binarise the masks of a VTP checkpoint, slice, and save."""
    model, cfg, _ = load_checkpoint(source)
    return _prune(model, cfg, out, ratio, git_revision())


def _prune(model: ABTrackModel, cfg: ABTrackConfig, out: Path, ratio: Optional[float],
           revision: str) -> Path:
    ratio = cfg.model.prune_ratio if ratio is None else ratio
    if not model.has_vtp_masks:
        raise TrainingError("the model has no relaxed VTP masks to binarise: prune a checkpoint of "
                            "the vtp stage (or one built with model.vtp_masks: true)")
    try:
        prune_model(model, ratio)
    except ValueError as exc:
        raise TrainingError(f"pruning failed: {exc}") from None
    cfg = config_for_model(model, dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, prune_ratio=ratio)))
    save_checkpoint(out, model, cfg, {"stage": "prune", "git_revision": revision})
    write_run_record(out.parent, cfg, revision)
    return out


class Pipeline:
    """Runs the stages asked for, each from the previous stage's model or a checkpoint."""

    def __init__(self, opts: TrainOptions, ctx: DistributedContext) -> None:
        if opts.stage not in STAGE_CHOICES:
            raise TrainingError(f"--stage must be one of {', '.join(STAGE_CHOICES)}, got {opts.stage!r}")
        if opts.init is not None and opts.resume is not None:
            raise TrainingError("give either --init (start a stage from weights) or --resume "
                                "(continue an interrupted stage), not both")
        self.opts, self.ctx = opts, ctx
        self.revision = git_revision()
        self.resume_state: Optional[dict] = None
        self.model, self.cfg, self.stages = self._start()
        forward_dtype(self.cfg, ctx.device)  # an unusable precision fails before any file is written

    def _start(self) -> tuple[ABTrackModel, ABTrackConfig, list[str]]:
        opts = self.opts
        file_cfg = load_config(opts.config) if opts.config is not None else None
        stages = list(STAGES) if opts.stage == "all" else [opts.stage]
        source = opts.resume or opts.init
        if source is None:
            if file_cfg is None:
                raise TrainingError("give --config FILE (or --init / --resume CHECKPOINT)")
            if stages[0] != "vtp":
                raise TrainingError(f"stage {stages[0]} starts from a checkpoint: pass --init CHECKPOINT")
            cfg = apply_overrides(file_cfg, opts)
            validate_train_config(cfg)
            torch.manual_seed(cfg.train.seed)  # every process builds the same initial weights
            model = build_model(dataclasses.replace(cfg.model, vtp_masks=True, bdm=False))
            return model, cfg, stages
        model, ckpt_cfg, extra = load_checkpoint(source)
        # The architecture comes from the checkpoint; training settings from --config when given,
        # and a stage started with --init may add optional parts (add_model_parts).
        model_cfg = ckpt_cfg.model
        if opts.init is not None and file_cfg is not None:
            try:
                model_cfg = add_model_parts(model, file_cfg.model)  # the loaded model's config, parts added
            except ValueError as exc:  # e.g. an unknown model.bdm_input
                raise TrainingError(f"model section of {opts.config}: {exc}") from None
        cfg = apply_overrides(dataclasses.replace(file_cfg or ckpt_cfg, model=model_cfg), opts)
        validate_train_config(cfg)
        if opts.resume is not None:
            stage = extra.get("stage")
            if "train_state" not in extra or stage not in ("vtp", "bdm"):
                raise TrainingError(f"{source} is not a resumable training checkpoint (use the "
                                    f"{CHECKPOINT_FILE} of a vtp or bdm stage, or pass it as --init)")
            if stage not in stages:
                raise TrainingError(f"{source} is a checkpoint of stage {stage}, not of {opts.stage}")
            stages = stages[stages.index(stage):]
            self.resume_state = extra["train_state"]
        return model, cfg, stages

    def run(self) -> list[StageResult]:
        train_data = val_data = None
        if any(s in ("vtp", "bdm") for s in self.stages):
            train_data = PairDataset(load_sources(self.cfg.train.datasets, "training"),
                                     PairSettings.from_config(self.cfg), self.cfg.train.seed)
        if self.cfg.train.val_datasets and self.cfg.train.val_pairs > 0:
            val_data = PairDataset(load_sources(self.cfg.train.val_datasets, "validation"),
                                   PairSettings.from_config(self.cfg, augment=False), self.cfg.train.seed)
        results = []
        for stage in self.stages:
            folder = self.opts.out_dir / stage
            if stage == "prune":
                path = folder / MODEL_FILE
                if self.ctx.is_main:
                    _prune(self.model, self.cfg, path, None, self.revision)
                else:  # the other processes slice their copy the same way, without writing
                    prune_model(self.model, self.cfg.model.prune_ratio)
                self.ctx.barrier()
            else:
                path = self._train_stage(stage, folder, train_data)
            results.append(StageResult(stage, path, self._validate(stage, folder, val_data)))
        return results

    def _train_stage(self, stage: str, folder: Path, data: PairDataset) -> Path:
        model = prepare_for_stage(self.model.to(self.ctx.device), stage)
        cfg = config_for_model(model, self.cfg)
        if self.ctx.is_main:
            write_run_record(folder, cfg, self.revision)
        trainer = StageTrainer(stage, model, cfg, self.ctx, folder, self.revision)
        start = 0
        if self.resume_state is not None:
            start = trainer.load_state(self.resume_state)
            self.resume_state = None
        trainer.fit(data, start)
        path = folder / MODEL_FILE
        if self.ctx.is_main:
            save_checkpoint(path, model, cfg, {"stage": stage, "epoch": trainer.settings.epochs,
                                               "git_revision": self.revision})
        self.ctx.barrier()
        return path

    def _validate(self, stage: str, folder: Path, data: Optional[PairDataset]) -> dict[str, float]:
        if data is None:
            return {}
        result: dict[str, float] = {}
        if self.ctx.is_main:
            model = self.model.to(self.ctx.device)
            result = evaluate(model, data, self.cfg.train.val_pairs, self.cfg.train.batch_size, self.ctx.device)
            CsvLog(folder / "val_log.csv", VAL_COLUMNS).write({
                "stage": stage, "epoch": stage_config(self.cfg, stage).epochs if stage != "prune" else 0,
                "num_blocks": model.num_blocks, **result})
            print(f"validation after {stage}: {format_metrics(result)} (of {model.num_blocks} blocks)",
                  flush=True)
        self.ctx.barrier()
        return result


def run_training(opts: TrainOptions) -> list[StageResult]:
    """Entry point of ``abtrack train`` (one process; torchrun starts one per GPU)."""
    ctx = DistributedContext.from_env(opts.device)
    try:
        return Pipeline(opts, ctx).run()
    finally:
        ctx.close()
