"""One-file checkpoints of plain data (loadable with ``torch.load(..., weights_only=True)``)."""
from __future__ import annotations

import dataclasses
import pickle
import re
from pathlib import Path
from typing import Any, Optional, Union

import torch

from ..config import ABTrackConfig, ConfigError, config_from_dict, to_dict
from .abtrack import ABTrackModel, build_model
from .plan import PruningPlan
from .pruning import apply_plan

FORMAT_NAME = "abtrack-checkpoint"
FORMAT_VERSION = 1
DEFAULT_CHECKPOINT = Path(__file__).resolve().parent.parent / "resources" / "default_model.pt"
# How torch's weights_only unpickler names a class it refuses to rebuild.
_UNSUPPORTED_GLOBAL = re.compile(r"Unsupported global: GLOBAL ([\w.]+)")
_PLAIN_SCALARS = (str, int, float, bool, type(None))


class CheckpointError(RuntimeError):
    """A checkpoint file that is missing, unreadable, corrupt or of an unknown format."""

    def __init__(self, path: Union[str, Path], problem: str) -> None:
        super().__init__(f"checkpoint {path}: {problem}")
        self.path = Path(path)
        self.problem = problem


def _check_plain(value: Any, where: str) -> None:
    """Only data that weights_only loading accepts may go into a checkpoint."""
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError(f"{where}: key {key!r} is not a string")
            _check_plain(item, f"{where}.{key}")
    elif isinstance(value, (list, tuple)):
        for number, item in enumerate(value):
            _check_plain(item, f"{where}[{number}]")
    elif not isinstance(value, (*_PLAIN_SCALARS, torch.Tensor)):
        raise ValueError(f"{where}: {type(value).__name__} is not plain data "
                         "(use str, numbers, bool, None, lists, dicts or tensors)")


def config_for_model(model: ABTrackModel, cfg: ABTrackConfig) -> ABTrackConfig:
    """``cfg`` with the model section describing the model as it is now (switches may have moved,
    parts may have been added); an architecture field that does not describe it is an error."""
    model_cfg = dataclasses.replace(
        cfg.model, bdm=model.bdm_enabled, bypass_threshold=model.bypass_threshold,
        vtp_masks=model.has_vtp_masks, bdm_input=model.bdm_input, quality_head=model.quality is not None)
    for name in ("backbone", "depth", "template_size", "search_size", "patch_embed", "n_enf", "head_channels"):
        if getattr(model_cfg, name) != getattr(model.config, name):
            raise ValueError(f"config model.{name}={getattr(model_cfg, name)!r} does not describe the "
                             f"model (built with {getattr(model.config, name)!r})")
    return dataclasses.replace(cfg, model=model_cfg)


def save_checkpoint(path: Union[str, Path], model: ABTrackModel, cfg: ABTrackConfig,
                    extra: Optional[dict] = None, half: bool = False) -> None:
    """Write weights, resolved config, pruning plan and ``extra``; ``half`` stores floats as fp16."""
    extra = {} if extra is None else extra
    _check_plain(extra, "extra")
    state = {}
    for key, tensor in model.state_dict().items():
        tensor = tensor.detach().cpu()
        state[key] = tensor.half() if half and tensor.is_floating_point() else tensor
    payload = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "state_dict": state,
        "config": to_dict(config_for_model(model, cfg)),
        "pruning_plan": model.pruning_plan.to_dict() if model.pruning_plan is not None else None,
        "storage": "float16" if half else "float32",
        "extra": extra,
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)  # a crash mid-write never leaves a truncated checkpoint under the real name


def _read_payload(path: Path) -> dict:
    if not path.is_file():
        raise CheckpointError(path, "file not found")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = _UNSUPPORTED_GLOBAL.search(str(exc))
        if found:
            raise CheckpointError(path, "refused: it holds objects that are not plain data "
                                        f"(pickled {found.group(1)})") from None
        raise CheckpointError(path, "truncated or corrupt file (not a readable torch file)") from None
    except Exception as exc:  # truncated zip, bad magic number, EOF...: all mean a corrupt file
        raise CheckpointError(path, f"truncated or corrupt file ({type(exc).__name__}: {exc})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT_NAME:
        raise CheckpointError(path, f"not an {FORMAT_NAME} file")
    if payload.get("version") != FORMAT_VERSION:
        raise CheckpointError(path, f"unknown format version {payload.get('version')!r} "
                                    f"(this code reads version {FORMAT_VERSION})")
    missing = {"state_dict", "config", "pruning_plan", "extra"} - set(payload)
    if missing:
        raise CheckpointError(path, f"missing entries: {', '.join(sorted(missing))}")
    state = payload["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(path, "'state_dict' is not a mapping of names to tensors")
    for key in ("config", "extra"):
        if not isinstance(payload[key], dict):
            raise CheckpointError(path, f"'{key}' is not a mapping (got {type(payload[key]).__name__})")
    return payload


def load_checkpoint(path: Union[str, Path], map_location: Union[str, torch.device] = "cpu"
                    ) -> tuple[ABTrackModel, ABTrackConfig, dict]:
    """Rebuild the model exactly (architecture, pruning, switches, weights in fp32) from its file."""
    path = Path(path)
    payload = _read_payload(path)
    try:
        cfg = config_from_dict(payload["config"])
    except ConfigError as exc:
        raise CheckpointError(path, f"invalid stored config: {exc}") from None
    # The weights come from the file, so the backbone's pretrained source is not needed.
    try:
        model = build_model(dataclasses.replace(cfg.model, pretrained=None))
        if payload["pruning_plan"] is not None:
            apply_plan(model, PruningPlan.from_dict(payload["pruning_plan"]))
    except ValueError as exc:
        raise CheckpointError(path, f"cannot rebuild the model: {exc}") from None
    state = {key: value.float() if value.is_floating_point() else value
             for key, value in payload["state_dict"].items()}
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise CheckpointError(path, f"weights do not fit the stored config: {exc}") from None
    model.config = dataclasses.replace(model.config, pretrained=cfg.model.pretrained)
    return model.to(map_location), cfg, payload["extra"]


def default_checkpoint_path() -> Optional[Path]:
    """The packaged default model, if it was installed."""
    return DEFAULT_CHECKPOINT if DEFAULT_CHECKPOINT.is_file() else None
