"""TensorRT backend (CUDA: x86 GPUs, Jetson AGX): the same per-block graphs as ONNX Runtime,
built into TensorRT engines once and cached next to the ONNX files.

NOT RUN in this project's development environment (no GPU, no TensorRT there); written against
the TensorRT 10 Python API (named I/O tensors, ``execute_async_v3``). The parity test in
test/test_backend_tensorrt.py runs where TensorRT and CUDA exist and is skipped, saying why,
where they do not.

Each gate decision reads ``p_i`` on the host: one device->host sync of one scalar per optional
block. The paper's BDM needs the bypass token as it leaves the previous block, so the decisions
cannot be hoisted out of the loop; what can be removed is everything else (engine launches are
asynchronous on one stream, inputs/outputs stay on the GPU, the BDM is one tiny torch op).
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Optional, Union

import torch

from abtrack_ros.model import ABTrackModel, ModelOutput

from .base import BackendUnavailableError, InferenceBackend, require_batch_one
from .export import GraphSet, export_graphs
from .gating import GatedDriver

WORKSPACE_BYTES = 1 << 30


def tensorrt_available() -> bool:
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return False
    return torch.cuda.is_available()


def engine_path(graphs: GraphSet, name: str, fp16: bool, device: torch.device) -> Path:
    """Engines are specific to the TensorRT version and the GPU: both are in the file name."""
    import tensorrt as trt

    gpu = re.sub(r"[^A-Za-z0-9]+", "-", torch.cuda.get_device_name(device)).strip("-")
    return graphs.folder / f"{name}.{'fp16' if fp16 else 'fp32'}.trt{trt.__version__}.{gpu}.engine"


def build_engine(onnx_path: Path, target: Path, fp16: bool, token_range: Optional[tuple[int, int]]) -> None:
    """ONNX -> serialized engine (the Python equivalent of ``trtexec --onnx ... --saveEngine ...``)."""
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT cannot parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
    if fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    if token_range is not None:  # block graphs: with or without the bypass token
        profile = builder.create_optimization_profile()
        tensor = network.get_input(0)
        dim = tensor.shape[2]
        low, high = token_range
        profile.set_shape(tensor.name, (1, low, dim), (1, high, dim), (1, high, dim))
        config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"TensorRT failed to build an engine from {onnx_path}")
    staging = target.with_name(f".{target.name}.tmp")
    staging.write_bytes(bytes(serialized))
    staging.replace(target)


class _Engine:
    """One deserialized engine with its execution context; I/O are torch CUDA tensors."""

    def __init__(self, path: Path, device: torch.device) -> None:
        import tensorrt as trt

        self.device = device
        self.engine = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(path.read_bytes())
        if self.engine is None:
            raise RuntimeError(f"cannot deserialize TensorRT engine {path} (built by another TensorRT version?)")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]

    def __call__(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = x.to(self.device, torch.float32).contiguous()  # engine I/O stays fp32; FP16 is internal
        name = self.inputs[0]
        self.context.set_input_shape(name, tuple(x.shape))
        self.context.set_tensor_address(name, x.data_ptr())
        outputs = []
        for out in self.outputs:
            tensor = torch.empty(tuple(self.context.get_tensor_shape(out)), dtype=torch.float32, device=self.device)
            self.context.set_tensor_address(out, tensor.data_ptr())
            outputs.append(tensor)
        if not self.context.execute_async_v3(torch.cuda.current_stream(self.device).cuda_stream):
            raise RuntimeError("TensorRT execution failed")
        return outputs


class TensorRTBackend(InferenceBackend):
    """Per-graph TensorRT engines (FP16 when ``half``), gates decided between the block engines."""

    name = "tensorrt"

    def __init__(self, model: ABTrackModel, device: Union[str, torch.device] = "cuda", half: bool = True,
                 cache_dir: Optional[Union[str, Path]] = None) -> None:
        device = torch.device(device)
        if device.type != "cuda":
            raise BackendUnavailableError(f"the tensorrt backend needs a CUDA device, not {device}")
        if not tensorrt_available():
            raise BackendUnavailableError("the tensorrt backend needs the tensorrt package and a CUDA GPU")
        super().__init__(model, device)
        self.half = half
        self.graphs = graphs = export_graphs(model, cache_dir)
        backbone = model.backbone
        sequence = backbone.template_side ** 2 + backbone.search_side ** 2
        self._engines: dict[str, _Engine] = {}
        for name in graphs.names():
            path = engine_path(graphs, name, half, device)
            if not path.is_file():
                tokens = (sequence, sequence + 1) if name.startswith("block_") else None
                build_engine(graphs.path(name), path, half, tokens)
            self._engines[name] = _Engine(path, device)
        self._driver = GatedDriver(model, self)

    @property
    def description(self) -> str:
        return f"tensorrt {'fp16' if self.half else 'fp32'}"

    # ---- GraphOps: tokens stay fp32 CUDA tensors between the engines
    def to_array(self, tensor: torch.Tensor) -> torch.Tensor:
        return tensor.to(self.device, torch.float32)

    def embed_search(self, search: torch.Tensor) -> torch.Tensor:
        return self._engines["search_embed"](search)[0]

    @staticmethod
    def concat(parts: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat(parts, dim=1)

    def bypass_token(self) -> torch.Tensor:
        return self.model.backbone.bypass_token.float()

    def decide(self, decision: int, x: torch.Tensor) -> float:
        # The model's own BDM on the GPU; float() is the one device->host sync of this gate.
        module = self.model.backbone.decisions[decision]
        tokens = x if module.search_linear is not None else x[:, -1:]  # the bypass token alone
        return float(module(tokens.to(module.linear.weight.dtype)))

    def run_block(self, index: int, x: torch.Tensor) -> torch.Tensor:
        return self._engines[GraphSet.block_name(index)](x)[0]

    def run_head(self, search_tokens: torch.Tensor):
        return tuple(self._engines["head"](search_tokens))

    def embed_template(self, template: torch.Tensor) -> torch.Tensor:
        require_batch_one(template, self.name)
        return self._engines["template_embed"](template)[0]

    def forward_embedded(self, template_tokens: torch.Tensor, search: torch.Tensor) -> ModelOutput:
        require_batch_one(search, self.name)
        return self._driver.forward(template_tokens, search)
