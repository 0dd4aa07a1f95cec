"""Strict, data-only configuration.

A config file is YAML (parsed with ``yaml.safe_load``: data, never code). Every section maps
onto a dataclass below; an unknown key anywhere is an error that names the full key path, and
a value of the wrong type is an error too. The resolved config (defaults filled in) is written
beside every checkpoint with :func:`save_config`.

Sections are owned by the parts of the system that read them: ``model`` by
``abtrack_ros.model``, ``train`` by ``abtrack_ros.training``, ``tracker`` by
``abtrack_ros.tracking``.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import yaml


class ConfigError(ValueError):
    """A config file or mapping that does not fit the schema."""


# Inference backends (abtrack_ros.backends); "auto" picks the fastest installed one.
BACKEND_NAMES = ("auto", "torch", "onnxruntime", "tensorrt")

BACKBONES = (
    "vit_tiny_patch16_224",
    "deit_tiny_patch16_224",
    "deit_small_patch16_224",
    "deit_base_patch16_224",
)


@dataclass
class ModelConfig:
    """The network: one-stream ViT backbone with BDMs and VTP masks, and the center head."""

    backbone: str = "deit_tiny_patch16_224"
    # Local file with pretrained backbone weights (timm state dict or {"model": ...}); None = random init.
    pretrained: Optional[str] = None
    # A-ViT-T weights use the DeiT-Tiny architecture; this label only documents their origin.
    weights_name: Optional[str] = None
    # Keep only the first `depth` blocks of the backbone (None = all), as the paper's DropMAE-N
    # study does; the package's CPU default model uses it to fit 2-core real-time budgets.
    depth: Optional[int] = None
    template_size: int = 128
    search_size: int = 256
    patch_size: int = 16
    # How images become tokens: "linear" (the ViT's patch_size x patch_size patchify, loads
    # pretrained weights) or "conv_stem" (stride-2 3x3 conv-BN-ReLU stages and a 1x1
    # projection, for training from scratch; docs/model.md).
    patch_embed: str = "linear"
    # First n_enf blocks always run and have no BDM.
    n_enf: int = 3
    bdm: bool = False
    # What a BDM reads: "token" (the bypass token, the paper) or "token_search_mean" (also the
    # mean search token; docs/training.md, issue 15). Can be added to a trained model at --init.
    bdm_input: str = "token"
    bypass_threshold: float = 0.5
    # Training-time gate: "straight_through" (hard forward, soft-gate gradient).
    gate: str = "straight_through"
    # Relaxed VTP masks present (stage 1 of the pipeline).
    vtp_masks: bool = False
    # Pruning ratio mu: the fraction of attention-inner / MLP-hidden dims removed per block.
    prune_ratio: float = 0.3
    head_channels: int = 256
    # A quality head: per cell, the expected IoU of the box decoded there (docs/model.md), trained
    # with train.quality_weight; read by the tracker's confidence. Can be added at --init.
    quality_head: bool = False
    drop_path_rate: float = 0.0


@dataclass
class DatasetSpec:
    """One training source, ``FORMAT:PATH`` plus its sampling weight."""

    spec: str = ""
    weight: float = 1.0
    split: Optional[str] = None


@dataclass
class LrStep:
    """From (0-based) epoch ``epoch`` on, every learning rate is its base value x ``factor``."""

    epoch: int = 0
    factor: float = 1.0


@dataclass
class StageConfig:
    """One stage of the three-stage pipeline."""

    epochs: int = 1
    pairs_per_epoch: int = 1000
    lr_backbone: float = 4e-5
    lr_head: float = 4e-4
    # The BDMs, the bypass token and the VTP masks (the parameters a stage adds); None = lr_head.
    lr_gates: Optional[float] = None
    # The quality head (model.quality_head), which starts untrained on a trained model; None = lr_head.
    lr_quality: Optional[float] = None
    # Step decay: every learning rate is multiplied by lr_drop_factor from epoch lr_drop_epoch on.
    lr_drop_epoch: Optional[int] = None
    lr_drop_factor: float = 0.1
    # A longer schedule instead of the one drop, e.g. a warm restart: the factor of the last
    # step whose epoch has been reached applies (1.0 before the first). Excludes lr_drop_epoch.
    lr_steps: list[LrStep] = field(default_factory=list)


@dataclass
class TrainConfig:
    """Optimisation, data sampling and losses (section 3.4 and 4.1 of the paper)."""

    datasets: list[DatasetSpec] = field(default_factory=list)
    val_datasets: list[DatasetSpec] = field(default_factory=list)
    batch_size: int = 32
    num_workers: int = 4
    seed: int = 42
    weight_decay: float = 1e-4
    grad_clip: float = 0.1
    # Mixed precision on GPU only: "bfloat16" (falls back to float16 where unsupported) or
    # "float16" (with a gradient scaler).
    amp: bool = True
    amp_dtype: str = "bfloat16"
    # bf16 autocast of the forward pass on CPU (amp and amp_dtype are CUDA-only); needs a CPU with
    # native bf16 (AVX-512 BF16, AMX or Arm BF16), else training stops with an error.
    amp_cpu: bool = False
    max_frame_gap: int = 200
    search_jitter_scale: float = 0.25
    search_jitter_center: float = 3.0
    grayscale_prob: float = 0.05
    flip_prob: float = 0.5
    brightness_jitter: float = 0.2
    # Share of training pairs whose search crop leaves the target out (a window of the same frame
    # beside it, with whatever background and look-alikes are there): the score map is taught to
    # stay low when the target is absent, the box terms skip those pairs. 0 = off (the paper).
    negative_pair_prob: float = 0.0
    # Share of training crops (template and search drawn apart) degraded as by a real camera: low
    # resolution, motion blur, JPEG recompression (training/degrade.py; 0 = off).
    degrade_prob: float = 0.0
    # Loss weights (eq. 8) and sparsity settings (eq. 2 with the sign of method-notes.md).
    focal_weight: float = 1.0
    giou_weight: float = 2.0
    l1_weight: float = 5.0
    sparsity_weight: float = 5.0
    tau0: float = 0.4
    sparsity_slope: float = 0.1
    adaptive_tau: bool = True
    # How the per-sample targets spread around tau0: "loss" (the paper: slope x the GIoU loss's
    # difference from the batch mean) or "standardised" (slope x that difference in batch
    # standard deviations); docs/training.md.
    sparsity_spread: str = "loss"
    # Stage bdm only, an addition to the paper: scale of the logistic noise on the BDM logits
    # before the hard training-time decision, so that other paths get explored (0 = off).
    gate_noise: float = 0.0
    vtp_l1_weight: float = 1e-4
    # Stage bdm only, an addition to the paper: weight of a distillation term pulling the
    # bypassed model's score map and box toward those of the same model with every block run,
    # frozen at the start of the stage (0 = off, the paper's loss).
    distill_weight: float = 0.0
    # Weight of the quality head's loss (models with model.quality_head; docs/training.md).
    quality_weight: float = 1.0
    stage1_vtp: StageConfig = field(default_factory=StageConfig)
    stage3_bdm: StageConfig = field(default_factory=StageConfig)
    log_every: int = 10
    # Validation at the end of each stage: this many pairs from val_datasets (none = skipped).
    val_pairs: int = 256


@dataclass
class ConfidenceWeights:
    """The logistic model of a step's confidence: ``sigmoid(bias + sum(weight * cue))``.

    One weight per cue of ``abtrack_ros.tracking.confidence`` (docs/tracking.md, "Confidence,
    LOST state and re-acquisition"). The weights belong to a model: the defaults are fitted for the
    shipped default model; refit them with ``benchmarks/fit_confidence.py`` after retraining.
    """

    bias: float = -7.561
    peak_logit: float = 0.466
    sharpness: float = 3.344
    competitor: float = 0.0
    jump: float = -1.304
    size_change: float = 0.0
    appearance: float = 6.678
    # Models with a quality head only (model.quality_head); 0 = not used.
    quality_logit: float = 0.0

    def __post_init__(self) -> None:
        for name, value in dataclasses.asdict(self).items():
            if not abs(value) < float("inf"):  # also false for NaN
                raise ConfigError(f"tracker.confidence.{name} must be a finite number, got {value}")


@dataclass
class TrackerConfig:
    """Inference-time tracking: crops, Hann window, confidence, LOST hysteresis, re-acquisition.

    Validated on construction (ConfigError). Thresholds apply to the confidence (0..1), not to
    the raw score; the tracker reads them at every step, so they can change between frames.
    """

    template_factor: float = 2.0
    search_factor: float = 4.0
    hann_window: bool = True
    confidence: ConfidenceWeights = field(default_factory=ConfidenceWeights)
    # TRACKING -> LOST: confidence below lost_score on lost_frames consecutive steps.
    lost_score: float = 0.45
    lost_frames: int = 1
    # LOST -> TRACKING: confidence at or above found_score (at least lost_score) on found_frames
    # consecutive steps.
    found_score: float = 0.75
    found_frames: int = 3
    # While LOST the search crop may grow by reacquire_growth per LOST step, up to
    # reacquire_max_factor target sizes (1.0 = no growth: a wider, coarser crop costs the default
    # model accuracy; docs/tracking.md).
    reacquire_growth: float = 1.0
    reacquire_max_factor: float = 8.0
    # Frame scan while LOST (0 = off): from reacquire_scan_after LOST steps on, every
    # reacquire_scan_every-th LOST step whose latest candidate is below the found threshold
    # searches the next cell of a scan over the whole frame (crops of the usual size, nearest to
    # the last tracked position first), so a target that comes back elsewhere is found. Waiting
    # first keeps a target that is still there but doubtful (docs/tracking.md).
    reacquire_scan_every: int = 0
    reacquire_scan_after: int = 10
    # Template refresh (0 = off, the paper's fixed template): at most every template_update_every
    # steps, a TRACKING step with confidence >= template_update_confidence replaces the template
    # with its own box's crop, to follow appearance change (docs/tracking.md).
    template_update_every: int = 0
    template_update_confidence: float = 0.9
    # Confidence-driven depth (0 = off: the BDMs decide alone): after a step whose confidence is
    # below full_depth_below, the next step runs every block. A doubtful or lost target is when a
    # tracker needs its whole depth; a confident one leaves the choice to the BDMs (docs/tracking.md).
    full_depth_below: float = 0.0
    # Confidence over time (0 = off: each step's own): the published confidence is the sigmoid
    # of a moving average of the confidence's logit, smoothing * previous + (1 - smoothing) *
    # this step's, restarted at every initialize (docs/tracking.md).
    confidence_smoothing: float = 0.0

    def __post_init__(self) -> None:
        checks = (  # (holds, the rule); `not holds` also catches NaN
            (self.template_factor > 0, f"template_factor must be > 0, got {self.template_factor}"),
            (self.search_factor > 0, f"search_factor must be > 0, got {self.search_factor}"),
            (0.0 <= self.lost_score <= 1.0, f"lost_score must be in 0..1, got {self.lost_score}"),
            (0.0 <= self.found_score <= 1.0, f"found_score must be in 0..1, got {self.found_score}"),
            (self.found_score >= self.lost_score,
             f"found_score ({self.found_score}) must be >= lost_score ({self.lost_score}): the hysteresis"),
            (self.lost_frames >= 1, f"lost_frames must be >= 1, got {self.lost_frames}"),
            (self.found_frames >= 1, f"found_frames must be >= 1, got {self.found_frames}"),
            (self.reacquire_growth >= 1.0, f"reacquire_growth must be >= 1, got {self.reacquire_growth}"),
            (self.reacquire_max_factor >= self.search_factor,
             f"reacquire_max_factor ({self.reacquire_max_factor}) must be >= search_factor ({self.search_factor})"),
            (self.template_update_every >= 0, f"template_update_every must be >= 0, got {self.template_update_every}"),
            (self.reacquire_scan_every >= 0, f"reacquire_scan_every must be >= 0, got {self.reacquire_scan_every}"),
            (self.reacquire_scan_after >= 0, f"reacquire_scan_after must be >= 0, got {self.reacquire_scan_after}"),
            (0.0 <= self.template_update_confidence <= 1.0,
             f"template_update_confidence must be in 0..1, got {self.template_update_confidence}"),
            (0.0 <= self.full_depth_below <= 1.0, f"full_depth_below must be in 0..1, got {self.full_depth_below}"),
            (0.0 <= self.confidence_smoothing < 1.0,
             f"confidence_smoothing must be in [0, 1), got {self.confidence_smoothing}"),
        )
        for holds, rule in checks:
            if not holds:
                raise ConfigError(f"tracker.{rule}")


@dataclass
class ABTrackConfig:
    """A whole config file: every section optional, defaults filled in."""

    name: str = "abtrack"
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    tracker: TrackerConfig = field(default_factory=TrackerConfig)


def _is_dataclass_type(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _convert(value: Any, tp: Any, path: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, path)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{path}: invalid value {value!r}")
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{path}: expected a list, got {type(value).__name__}")
        (item_tp,) = typing.get_args(tp)
        return [_convert(v, item_tp, f"{path}[{i}]") for i, v in enumerate(value)]
    if _is_dataclass_type(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a mapping, got {type(value).__name__}")
        return from_dict(tp, value, path)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{path}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{path}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{path}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{path}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{path}: unsupported schema type {tp!r}")


def from_dict(cls: type, data: dict, path: str = "") -> Any:
    """Build dataclass ``cls`` from ``data``; unknown keys and wrong types are errors."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        where = f"{path}." if path else ""
        raise ConfigError(
            f"unknown config key '{where}{unknown[0]}' (allowed here: {', '.join(sorted(names))})"
        )
    kwargs = {}
    for key, value in data.items():
        key_path = f"{path}.{key}" if path else key
        kwargs[key] = _convert(value, hints[key], key_path)
    return cls(**kwargs)


def to_dict(cfg: Any) -> dict:
    """Plain-data copy of a config dataclass (for YAML and for checkpoints)."""
    return dataclasses.asdict(cfg)


def load_config(path: Union[str, Path]) -> ABTrackConfig:
    """Load a strict YAML config file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")
    try:
        return from_dict(ABTrackConfig, data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def config_from_dict(data: dict) -> ABTrackConfig:
    """Strictly rebuild a full config from plain data (e.g. the copy stored in a checkpoint)."""
    return from_dict(ABTrackConfig, data)


def save_config(cfg: ABTrackConfig, path: Union[str, Path]) -> None:
    """Write the resolved config as YAML."""
    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
