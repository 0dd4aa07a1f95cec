"""Export an ABTrack model as a set of ONNX graphs, cached on disk by a hash of the model.

One graph cannot keep the bypass real (ONNX has no cheap data-dependent skip that every runtime
executes lazily), so the model is cut where the BDM decides:

==================  =====================================================================
graph               function
==================  =====================================================================
``template_embed``  template image -> template tokens (once per target)
``search_embed``    search image -> search tokens
``block_<i>``       one transformer block; the token axis is dynamic (with or without the
                    bypass token), so the same graph serves BDM on and off
``head``            final LayerNorm + center head on the search tokens -> three maps (the
                    head with batch norm folded and its branches fused, as the torch
                    backend runs it), and the quality map when the model has a quality head
==================  =====================================================================

The BDM decisions stay in the driver (``gating.GatedDriver``). Graphs are exported once per
model: the cache folder is named by a SHA-256 over the architecture, the pruning plan and every
weight, so a changed checkpoint never reuses stale graphs.
"""
from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import torch
from torch import nn

from abtrack_ros.config import to_dict
from abtrack_ros.model import ABTrackModel
from abtrack_ros.model.head import FusedCenterPredictor

# Bump when the graph layout changes: it is part of the cache key (2: fused head).
GRAPH_FORMAT = 2
OPSET = 17
MANIFEST = "manifest.json"
CACHE_ENV = "ABTRACK_CACHE_DIR"
TOKEN_AXIS = "tokens"


def default_cache_root() -> Path:
    """``$ABTRACK_CACHE_DIR`` or ``~/.cache/abtrack_ros``."""
    root = os.environ.get(CACHE_ENV)
    return Path(root).expanduser() if root else Path.home() / ".cache" / "abtrack_ros"


def model_digest(model: ABTrackModel) -> str:
    """SHA-256 of what the graphs depend on: config, pruning plan and weights (as fp32)."""
    digest = hashlib.sha256(f"graph-format-{GRAPH_FORMAT}".encode())
    digest.update(json.dumps(to_dict(model.config), sort_keys=True, default=str).encode())
    plan = model.pruning_plan
    digest.update(json.dumps(None if plan is None else plan.to_dict(), sort_keys=True).encode())
    for name, tensor in sorted(model.state_dict().items()):
        data = tensor.detach().to("cpu", torch.float32 if tensor.is_floating_point() else tensor.dtype)
        digest.update(f"{name}:{tuple(data.shape)}:{data.dtype}".encode())
        digest.update(data.contiguous().numpy().tobytes())
    return digest.hexdigest()


class _Embed(nn.Module):
    def __init__(self, model: ABTrackModel, search: bool) -> None:
        super().__init__()
        self.backbone = model.backbone
        self.search = search

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.backbone.embed_search(image) if self.search else self.backbone.embed_template(image)


class _Head(nn.Module):
    def __init__(self, model: ABTrackModel) -> None:
        super().__init__()
        self.norm = model.backbone.norm
        self.head = FusedCenterPredictor(model.head)
        self.model = model
        self.side = model.backbone.search_side

    def forward(self, search_tokens: torch.Tensor):
        features = self.norm(search_tokens).transpose(1, 2).reshape(1, -1, self.side, self.side)
        return self.model.head_maps(features, self.head)


@dataclass(frozen=True)
class GraphSet:
    """Paths of the exported graphs of one model."""

    folder: Path
    num_blocks: int

    def path(self, name: str) -> Path:
        return self.folder / f"{name}.onnx"

    @staticmethod
    def block_name(index: int) -> str:
        return f"block_{index}"

    def names(self) -> list[str]:
        return ["template_embed", "search_embed", *map(self.block_name, range(self.num_blocks)), "head"]


def _export(module: nn.Module, example: torch.Tensor, path: Path, outputs: list[str],
            dynamic_tokens: bool) -> None:
    axes = {"x": {1: TOKEN_AXIS}, outputs[0]: {1: TOKEN_AXIS}} if dynamic_tokens else None
    with warnings.catch_warnings():
        # The TorchScript exporter is deprecated in favour of the dynamo one, which needs
        # onnxscript; these graphs have no control flow, so the classic exporter is exact.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)  # input checks traced as constants
        torch.onnx.export(module, (example,), str(path), dynamo=False, input_names=["x"], output_names=outputs,
                          dynamic_axes=axes, opset_version=OPSET, do_constant_folding=True)


def _complete(graphs: GraphSet) -> bool:
    """Whether ``graphs.folder`` holds a finished export (its manifest is written last)."""
    return (graphs.folder / MANIFEST).is_file() and all(graphs.path(n).is_file() for n in graphs.names())


def export_graphs(model: ABTrackModel, cache_root: Optional[Union[str, Path]] = None) -> GraphSet:
    """The model's ONNX graphs, exported into ``<cache_root>/onnx/<sha256>/`` unless already there."""
    root = Path(cache_root).expanduser() if cache_root is not None else default_cache_root()
    digest = model_digest(model)
    folder = root / "onnx" / digest
    graphs = GraphSet(folder, model.num_blocks)
    if _complete(graphs):
        return graphs
    source = copy.deepcopy(model).to("cpu", torch.float32).eval()
    backbone = source.backbone
    dim = backbone.pos_search.shape[-1]
    template_tokens, search_tokens = backbone.template_side ** 2, backbone.search_side ** 2
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{digest[:12]}-", dir=folder.parent))
    try:
        staged = GraphSet(staging, graphs.num_blocks)
        with torch.no_grad():
            _export(_Embed(source, search=False), torch.zeros(1, 3, *(2 * [backbone.template_side * backbone.patch_size])),
                    staged.path("template_embed"), ["tokens"], dynamic_tokens=False)
            _export(_Embed(source, search=True), torch.zeros(1, 3, *(2 * [backbone.search_side * backbone.patch_size])),
                    staged.path("search_embed"), ["tokens"], dynamic_tokens=False)
            example = torch.randn(1, template_tokens + search_tokens + 1, dim)
            for index, block in enumerate(backbone.blocks):
                _export(block, example, staged.path(graphs.block_name(index)), ["y"], dynamic_tokens=True)
            head_outputs = ["score_map", "offset_map", "size_map"] + (["quality_map"] if source.quality is not None else [])
            _export(_Head(source), torch.randn(1, search_tokens, dim), staged.path("head"),
                    head_outputs, dynamic_tokens=False)
        manifest = {"graph_format": GRAPH_FORMAT, "opset": OPSET, "sha256": digest, "graphs": graphs.names(),
                    "torch": torch.__version__, "backbone": source.config.backbone}
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2))
        if _complete(graphs):  # another process (a second node) finished the same export first
            return graphs
        if folder.exists():  # an incomplete earlier export
            shutil.rmtree(folder)
        staging.rename(folder)  # atomic: a reader sees all graphs or none
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return graphs
