"""Choosing and building a backend by name (``auto`` = the fastest one installed for the device)."""
from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional, Union

import torch

from abtrack_ros.model import ABTrackModel

from .base import BACKEND_NAMES, BackendUnavailableError, InferenceBackend
from .onnxruntime_backend import OnnxRuntimeBackend, onnxruntime_available
from .tensorrt_backend import TensorRTBackend, tensorrt_available
from .torch_backend import TorchBackend

LOG = logging.getLogger(__name__)


@dataclass
class BackendOptions:
    """Precision and cache options; which apply depends on the backend (checked in ``create_backend``)."""

    int8: bool = False  # onnxruntime: dynamically quantised block graphs
    bf16: bool = False  # torch on CPU: bfloat16 weights and activations
    cache_dir: Optional[Union[str, Path]] = None  # exported graphs/engines (default ~/.cache/abtrack_ros)
    threads: Optional[int] = None  # onnxruntime intra-op threads (default: torch's thread count)
    # A model that will not be seen again (random weights): export into a temporary folder that is
    # deleted once the graphs are loaded, instead of filling the cache with one folder per run.
    ephemeral: bool = False


def resolve_backend_name(name: str, device: torch.device, options: Optional[BackendOptions] = None) -> str:
    """``auto`` -> tensorrt on CUDA when importable, else torch; on CPU onnxruntime when importable
    (1.25x faster per tracker step than torch with the default model at the same AUC,
    docs/speed.md) unless bf16, a torch precision, was asked for; else torch."""
    if name not in BACKEND_NAMES:
        raise ValueError(f"unknown backend '{name}' (choose one of: {', '.join(BACKEND_NAMES)})")
    if name != "auto":
        return name
    options = options or BackendOptions()
    if device.type == "cuda":
        return "tensorrt" if tensorrt_available() else "torch"
    return "onnxruntime" if not options.bf16 and onnxruntime_available() else "torch"


def create_backend(name: str, model: ABTrackModel, device: torch.device, half: bool = False,
                   options: Optional[BackendOptions] = None) -> InferenceBackend:
    """A backend for ``model`` already placed on ``device`` in its precision (see Tracker)."""
    options = options or BackendOptions()
    resolved = resolve_backend_name(name, device, options)
    if options.int8 and resolved != "onnxruntime":
        raise ValueError(f"int8 is an onnxruntime option; backend '{resolved}' does not take it")
    if options.bf16 and resolved != "torch":
        raise ValueError(f"bf16 is a torch CPU option; backend '{resolved}' does not take it")
    if name != "auto" or resolved != "onnxruntime" or options.int8:
        return _build(resolved, model, device, half, options)
    try:
        return _build(resolved, model, device, half, options)
    except Exception as error:  # noqa: BLE001 - any failure of a speed-only choice
        # auto chose ONNX Runtime for speed only: a graph cache that cannot be written (a
        # read-only home on a robot) or a graph it cannot load must not stop the tracker; torch
        # runs the same model. Asked for by name, the error stops the start instead.
        LOG.warning("onnxruntime backend unavailable (%s: %s); using torch. Set a writable cache folder "
                    "(--cache-dir or ABTRACK_CACHE_DIR) for the faster backend", type(error).__name__, error)
        return TorchBackend(model, device)


def _build(resolved: str, model: ABTrackModel, device: torch.device, half: bool,
           options: BackendOptions) -> InferenceBackend:
    if resolved == "torch":
        return TorchBackend(model, device)
    if options.ephemeral and options.cache_dir is None:
        with tempfile.TemporaryDirectory(prefix="abtrack_graphs_") as tmp:  # sessions/engines hold the graphs
            return _build(resolved, model, device, half, replace(options, cache_dir=tmp, ephemeral=False))
    if resolved == "onnxruntime":
        if half:
            raise BackendUnavailableError("the onnxruntime backend runs fp32 or int8 on the CPU; half is CUDA only")
        return OnnxRuntimeBackend(model, device, threads=options.threads, int8=options.int8,
                                  cache_dir=options.cache_dir)
    return TensorRTBackend(model, device, half=half, cache_dir=options.cache_dir)
