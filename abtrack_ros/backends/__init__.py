"""Inference backends for the ABTrack model: torch, ONNX Runtime (CPU) and TensorRT (CUDA).

All keep the bypass real (a bypassed block is never executed) and return the torch model's
``ModelOutput``. See docs/speed.md.
"""
from .artefacts import ARTEFACT_FORMATS, ArtefactError, export_artefacts, resolve_artefacts, resolve_checkpoint
from .base import BACKEND_NAMES, BackendUnavailableError, InferenceBackend
from .export import GraphSet, default_cache_root, export_graphs, model_digest
from .gating import GatedDriver
from .onnxruntime_backend import OnnxRuntimeBackend, onnxruntime_available
from .selection import BackendOptions, create_backend, resolve_backend_name
from .tensorrt_backend import TensorRTBackend, tensorrt_available
from .torch_backend import TorchBackend

__all__ = [
    "ARTEFACT_FORMATS", "ArtefactError", "export_artefacts", "resolve_artefacts", "resolve_checkpoint",
    "BACKEND_NAMES", "BackendUnavailableError", "InferenceBackend", "GraphSet", "default_cache_root",
    "export_graphs", "model_digest", "GatedDriver", "OnnxRuntimeBackend", "onnxruntime_available",
    "BackendOptions", "create_backend", "resolve_backend_name", "TensorRTBackend", "tensorrt_available",
    "TorchBackend",
]
