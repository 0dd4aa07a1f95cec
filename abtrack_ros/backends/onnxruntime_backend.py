"""ONNX Runtime backend (CPU): per-block graphs, bypassed blocks are never run."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch

from abtrack_ros.model import ABTrackModel, ModelOutput

from .base import BackendUnavailableError, InferenceBackend, require_batch_one
from .export import GraphSet, export_graphs
from .gating import GatedDriver, NumpyDecisions

INT8_SUFFIX = ".int8.onnx"


def onnxruntime_available() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def quantized_block(graphs: GraphSet, index: int) -> Path:
    """Dynamic int8 copy of one block graph (MatMul weights int8, activations quantised per call), cached."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    source = graphs.path(graphs.block_name(index))
    target = source.with_name(source.stem + INT8_SUFFIX)
    if not target.is_file():
        staging = target.with_name(f".{target.name}.tmp")
        # Only the block matmuls: they are ~all of the compute; the convolutions of the
        # embeddings and head stay fp32 (ConvInteger is slow on CPU and costs accuracy).
        logging.disable(logging.WARNING)  # the quantiser logs a generic pre-processing hint per call
        try:
            quantize_dynamic(source, staging, op_types_to_quantize=["MatMul"], weight_type=QuantType.QInt8)
        finally:
            logging.disable(logging.NOTSET)
        staging.replace(target)
    return target


class OnnxRuntimeBackend(InferenceBackend):
    """Template/search embedding, one graph per block and the head, run by ONNX Runtime on CPU.

    The BDM gate of block ``i`` is decided in Python between the block graphs (``GatedDriver``),
    so a bypassed block costs nothing. ``int8=True`` runs dynamically quantised block graphs.
    The weights (graphs, BDMs, bypass token) are read once, here; the switches at every call.
    """

    name = "onnxruntime"

    def __init__(self, model: ABTrackModel, device: Union[str, torch.device] = "cpu", threads: Optional[int] = None,
                 int8: bool = False, cache_dir: Optional[Union[str, Path]] = None) -> None:
        device = torch.device(device)
        if device.type != "cpu":
            raise BackendUnavailableError(f"the onnxruntime backend runs on the CPU only, not on {device}")
        if not onnxruntime_available():
            raise BackendUnavailableError("the onnxruntime backend needs the onnxruntime package (pip install onnxruntime)")
        if next(model.parameters()).dtype != torch.float32:
            raise ValueError("the onnxruntime backend needs an fp32 model")
        super().__init__(model, device)
        import onnxruntime as ort

        self.int8 = int8
        self.threads = threads if threads is not None else torch.get_num_threads()
        if self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {self.threads}")
        self.graphs = export_graphs(model, cache_dir)
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # One session per graph, each with its own thread pool: spinning pools starve each
        # other (and torch) on a few cores, so idle threads sleep instead.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")

        def session(path: Path) -> "ort.InferenceSession":
            return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])

        self._template = session(self.graphs.path("template_embed"))
        self._search = session(self.graphs.path("search_embed"))
        self._blocks = [session(quantized_block(self.graphs, i) if int8 else self.graphs.path(self.graphs.block_name(i)))
                        for i in range(model.num_blocks)]
        self._head = session(self.graphs.path("head"))
        self._bypass_token = self.to_array(model.backbone.bypass_token)
        self._decisions = NumpyDecisions(model)
        self._driver = GatedDriver(model, self)

    @property
    def description(self) -> str:
        return f"onnxruntime {'int8 (dynamic)' if self.int8 else 'fp32'}, {self.threads} threads"

    # ---- GraphOps: tokens stay numpy float32 between the graphs
    @staticmethod
    def to_array(tensor: torch.Tensor) -> np.ndarray:
        return np.ascontiguousarray(tensor.detach().cpu().numpy(), dtype=np.float32)

    def embed_search(self, search: torch.Tensor) -> np.ndarray:
        return self._search.run(None, {"x": self.to_array(search)})[0]

    @staticmethod
    def concat(parts: list[np.ndarray]) -> np.ndarray:
        return np.concatenate(parts, axis=1)

    def bypass_token(self) -> np.ndarray:
        return self._bypass_token

    def decide(self, decision: int, x: np.ndarray) -> float:
        return self._decisions(decision, x[0])

    def run_block(self, index: int, x: np.ndarray) -> np.ndarray:
        return self._blocks[index].run(None, {"x": x})[0]

    def run_head(self, search_tokens: np.ndarray):
        outputs = self._head.run(None, {"x": np.ascontiguousarray(search_tokens)})
        return tuple(torch.from_numpy(out) for out in outputs)

    def embed_template(self, template: torch.Tensor) -> torch.Tensor:
        require_batch_one(template, self.name)
        return torch.from_numpy(self._template.run(None, {"x": self.to_array(template)})[0])

    def forward_embedded(self, template_tokens: torch.Tensor, search: torch.Tensor) -> ModelOutput:
        require_batch_one(search, self.name)
        return self._driver.forward(template_tokens, search)
